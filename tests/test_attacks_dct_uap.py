"""pgd-dct (Bonnet et al.) and the universal perturbations (MSU), on small real photos with the default BIQA."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluator.biqa import create
from evaluator.codec import OrganizerCodec
from submission.attacks import AttackError, get_attack

from attack_fixtures import RULES


@pytest.fixture(scope="module")
def model():
    return create("brisque")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage import data

    a = data.astronaut()
    return [np.ascontiguousarray(a[40:136, 150:278]), np.ascontiguousarray(data.coffee()[100:196, 200:328])]


def batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in images]).float() / 255.0


def test_pgd_dct_writes_jpegs_that_hold_its_pixels_and_stay_near_the_plain_jpeg(model, photos):
    codec = OrganizerCodec()
    attack = get_attack("pgd-dct")(search_steps=2, iters=5, lambda_steps=3, target=50.0)
    res = attack.run(batch(photos), model, ids=["a", "b"], **RULES)
    assert res.jpeg_bytes is not None and len(res.jpeg_bytes) == 2
    for i, blob in enumerate(res.jpeg_bytes):
        assert blob[:2] == b"\xff\xd8"
        decoded = codec.decompress(blob)
        assert np.array_equal(decoded, np.round(res.x_adv[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        ours = _dct_of(codec, blob)
        plain = _dct_of(codec, codec.compress(photos[i]))
        for k, k0 in zip(ours, plain):
            # bounded by max_step quantization steps around the unrounded original (libjpeg may round +-1 otherwise)
            assert np.abs(k.astype(int) - k0.astype(int)).max() <= attack.params.max_step + 1
        assert set(res.info[i]) >= {"eps", "lambda", "success_jpeg", "score_jpeg_raw"}


def _dct_of(codec: OrganizerCodec, blob: bytes, tables: bool = False):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.jpg"
        path.write_bytes(blob)
        c = codec.read_dct(path)
    return (c.Y, c.Cb, c.Cr, c.qt) if tables else (c.Y, c.Cb, c.Cr)


def test_pgd_dct_lowers_the_score_after_the_organizer_jpeg(model, photos):
    codec = OrganizerCodec()
    x = batch(photos[:1])
    before = float(model.raw_score(x)[0])
    attack = get_attack("pgd-dct")(search_steps=3, iters=10, lambda_steps=4, target=max(before - 30.0, 1.0))
    res = attack.run(x, model, **RULES)
    after = codec.roundtrip(codec.decompress(res.jpeg_bytes[0]))
    score_jpeg = float(model.raw_score(batch([after]))[0])
    assert score_jpeg < before - 10.0
    assert abs(score_jpeg - res.info[0]["score_jpeg_raw"]) < 1e-3


@pytest.mark.parametrize("codec", [OrganizerCodec(quality=75), OrganizerCodec(subsampling="4:4:4")],
                         ids=["quality75", "444"])
def test_pgd_dct_writes_for_and_checks_against_the_tasks_codec(model, photos, codec):
    """The codec given to run (the task's) is the one pgd-dct writes for: its tables and chroma grid are in the
    file, its round trip is the success check (score_jpeg_raw), and the max_step bound holds in its steps. Before:
    a `quality` setting (default 90) and the default subsampling, whatever the task said."""
    x = batch(photos[:1])
    attack = get_attack("pgd-dct")(search_steps=1, iters=2, lambda_steps=1, target=50.0)
    res = attack.run(x, model, **{**RULES, "codec": codec})
    default = attack.run(x, model, **RULES)
    assert res.jpeg_bytes != default.jpeg_bytes
    y, cb, cr, qt = _dct_of(codec, res.jpeg_bytes[0], tables=True)
    assert np.array_equal(qt, codec.quant_tables())
    factor = {"4:2:0": 2, "4:4:4": 1}[codec.subsampling]
    assert cb.shape[:2] == (-(-y.shape[0] // factor), -(-y.shape[1] // factor))
    after = codec.roundtrip(codec.decompress(res.jpeg_bytes[0]))
    with torch.no_grad():
        assert float(model.raw_score(batch([after]))[0]) == pytest.approx(res.info[0]["score_jpeg_raw"], abs=1e-3)
    assert (res.budget.excess(x, res.x_adv, res.jpeg_bytes) <= 1e-5).all()


@pytest.mark.parametrize("method", ["uap-cumulative", "uap-optimized", "uap-generative"])
def test_uap_trains_lowers_scores_saves_and_reloads(model, photos, tmp_path, method):
    paths = []
    for i, im in enumerate(photos):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(im).save(paths[-1])
    file = tmp_path / "uap.pt"
    rate = {"step": 0.01} if method == "uap-cumulative" else {"lr": 0.02}
    attack = get_attack(method)(epochs=4, height=96, width=128, uap_file=file, amplitude=0.8, **rate)
    attack.prepare(paths, model)
    assert file.is_file()
    x = batch(photos)
    res = attack.run(x, model, **RULES)
    assert float(res.raw_after.mean()) < float(res.raw_before.mean())
    assert float((res.x_adv - x).abs().max()) <= 0.8 * attack.params.eps + 1e-6
    again = get_attack(method)(uap_file=file, amplitude=0.8)
    again.prepare([], model)  # loads, no training images needed
    assert torch.equal(again.delta, attack.delta)
    other = "uap-optimized" if method != "uap-optimized" else "uap-cumulative"
    with pytest.raises(AttackError, match="trained by"):
        get_attack(other)(uap_file=file).prepare(paths, model)


def test_uap_bad_inputs(model, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(AttackError, match="not a UAP file"):
        get_attack("uap-optimized")(uap_file=bad).prepare([], model)
    with pytest.raises(AttackError, match="train_dir"):
        get_attack("uap-optimized")(train_dir=tmp_path / "missing").prepare([], model)
    with pytest.raises(AttackError, match="no training images"):
        get_attack("uap-optimized")().prepare([], model)
    with pytest.raises(AttackError, match="prepare"):
        get_attack("uap-optimized")().run(torch.rand(1, 3, 32, 32), model, **RULES)


def test_uap_settings_are_those_each_method_uses():
    """step drives only uap-cumulative, lr only the Adam-trained ones: each offers only its own."""
    assert "step" in {s.name for s in get_attack("uap-cumulative").param_specs()}
    for method in ("uap-optimized", "uap-generative"):
        names = {s.name for s in get_attack(method).param_specs()}
        assert "lr" in names and "step" not in names
    assert "lr" not in {s.name for s in get_attack("uap-cumulative").param_specs()}


def test_uap_cumulative_averages_the_per_image_signed_steps(model, photos):
    """One step from delta = 0 on a batch of two: delta = -step * mean_i sign(g_i), so it is 0 wherever the two
    images' gradients disagree in sign (the sign of the batch-mean gradient is never 0 there)."""
    x = batch(photos)
    attack = get_attack("uap-cumulative")(epochs=1, step=0.01)
    delta = attack.train([x], model)
    grads = []
    for i in range(2):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.raw_score(xi.clamp(0, 1)).sum(), xi)
        grads.append(g[0].sign())
    expected = -0.01 * (grads[0] + grads[1]) / 2
    assert torch.allclose(delta, expected, atol=1e-7)
    disagree = grads[0] * grads[1] < 0
    assert bool(disagree.any()) and bool((delta[disagree] == 0).all())


def test_uap_cumulative_update_gradient_averages_the_unsigned_steps(model, photos):
    """update=gradient (the MSU text and code): one step from delta = 0 is -step * mean_i g_i, the gradient of the
    batch-mean score, unsigned (clipped to eps)."""
    x = batch(photos)
    delta = get_attack("uap-cumulative")(epochs=1, step=1e-4, update="gradient").train([x], model)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.raw_score(xg.clamp(0, 1)).mean(), xg)
    expected = (-1e-4 * g.sum(dim=0)).clamp(-0.1, 0.1)  # d mean_i raw_i / d delta = sum_i of d raw_i/(N d x_i)
    assert torch.allclose(delta, expected, atol=1e-7, rtol=1e-4)
    assert delta.unique().numel() > 3  # not an average of two signed steps (values -step, 0, step only)


def test_uap_generative_saves_the_perturbation_the_training_optimized(model, photos, monkeypatch):
    """The saved delta is the generator's output in the mode it was trained in: equal to the delta that the next
    training step evaluates (before: a net switched to eval() gave another perturbation)."""
    from submission.attacks.methods.uap import GenerativeUAP

    seen: list[torch.Tensor] = []
    original = GenerativeUAP._loss

    def record(self, m, xb, delta):
        seen.append(delta.detach().clone())
        return original(self, m, xb, delta)

    monkeypatch.setattr(GenerativeUAP, "_loss", record)
    x = [batch(photos[:1]), batch(photos[1:])]
    saved = get_attack("uap-generative")(epochs=2, lr=0.05).train(x, model)
    steps = len(seen)
    seen.clear()
    get_attack("uap-generative")(epochs=3, lr=0.05).train(x, model)
    assert steps == 4 and torch.equal(saved, seen[steps])
    with torch.no_grad():
        trained = float(model.raw_score((torch.cat(x) + saved).clamp(0, 1)).mean())
        plain = float(model.raw_score(torch.cat(x)).mean())
    assert trained < plain


def test_a_uap_file_is_refused_for_other_weights(tmp_path):
    """A UAP trained on one network must not be reused on another network of the same model name (other weights
    file, or another --random-weights seed)."""
    import dataclasses

    import pytest
    import torch
    from evaluator_fixtures import BrightnessBIQA

    from submission.attacks import get_attack
    from submission.attacks.framework.driver import AttackError

    attack = get_attack("uap-cumulative")()
    attack.delta = torch.zeros(3, 8, 8)
    a, b = BrightnessBIQA(), BrightnessBIQA()
    a.info = dataclasses.replace(a.info, random_weights_seed=1)
    b.info = dataclasses.replace(b.info, random_weights_seed=2)
    attack.save(tmp_path / "u.pt", a)
    assert attack.load(tmp_path / "u.pt", a).shape == (3, 8, 8)
    with pytest.raises(AttackError, match="weights"):
        attack.load(tmp_path / "u.pt", b)
