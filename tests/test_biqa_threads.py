"""Registry-driven: every BIQA registered `thread_independent` gives bit-identical scores for 1 and 2 torch
threads and for any batch composition (the score cache relies on the first: it keys every other model's scores by
the thread count; pp-evaluate on both: it scores these models inside its per-image jobs, in worker processes)."""

from __future__ import annotations

import pytest
import torch
from parity_images import VERSIONS, photo, to_tensor

from evaluator.biqa import available, create, spec

INDEPENDENT = [name for name in available() if spec(name).thread_independent]


def test_the_embedded_training_free_models_declare_it():
    assert {"brisque", "niqe", "piqe"} <= set(INDEPENDENT)


@pytest.mark.parametrize("name", INDEPENDENT)
def test_scores_are_bit_identical_for_any_thread_count(name):
    rgb = photo("coffee")  # the parity tests' photo as clean, blurred, noisy and JPEG-20 versions
    images = to_tensor(*(make(rgb) for make in VERSIONS.values()))
    model = create(name)
    before = torch.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.inference_mode():
                out.append(model(images).clone())
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("name", INDEPENDENT)
def test_scores_are_bit_identical_for_any_batch_composition(name):
    rgb = photo("coffee")
    images = to_tensor(*(make(rgb) for make in VERSIONS.values()))
    model = create(name)
    with torch.inference_mode():
        together = model(images)
        one_by_one = torch.cat([model(images[k:k + 1]) for k in range(images.shape[0])])
        split = torch.cat([model(images[:1]), model(images[1:])])
    assert torch.equal(together, one_by_one) and torch.equal(together, split)
