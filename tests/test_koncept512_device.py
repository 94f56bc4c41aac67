"""KonCept512's execution settings: channels_last gives the default layout's scores, the model follows its device
(checked on the meta device: no op falls back to a CPU tensor, so a CUDA copy computes on CUDA), and the layout
does not change the weights' hash."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from evaluator.biqa.koncept512 import KonCept512, KonCept512BIQA
from evaluator.scoring.score_cache import model_hash


@pytest.fixture(scope="module")
def model() -> KonCept512BIQA:
    return KonCept512BIQA(random_seed=3).eval()


def _plain(model: KonCept512BIQA) -> KonCept512:
    plain = KonCept512()  # default (contiguous NCHW) layout
    plain.load_state_dict(model.net.state_dict())
    return plain.eval()


def test_channels_last_scores_equal_the_default_layout(model):
    x = torch.rand(2, 3, 120, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.raw_score(x)
        plain = _plain(model)(KonCept512BIQA.preprocess(x).contiguous())
    assert model.net.base[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, plain, rtol=0, atol=1e-4)


def test_the_layout_does_not_change_the_weights_hash(model):
    copy = deepcopy(model)
    copy.net = _plain(model)
    assert model_hash(model) == model_hash(copy)


def test_model_follows_its_device_meta():
    net = KonCept512BIQA(random_seed=3).eval().to("meta")
    x = torch.rand(3, 3, 96, 128, device="meta")
    with torch.no_grad():
        y = net.raw_score(x)
    assert y.device.type == "meta" and y.shape == (3,)
    xg = torch.rand(1, 3, 96, 128, device="meta", requires_grad=True)
    net.raw_score(xg).sum().backward()
    assert xg.grad is not None and xg.grad.device.type == "meta"


def test_cuda_refused_cleanly_where_there_is_none():
    from evaluator.biqa import create
    from evaluator.common.device import DeviceError

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        create("koncept512", random_weights_seed=0, device="cuda")
