"""KonCept512: checkpoint layout, weight files (good and bad), preprocessing, and the BIQA contract.

The network is 60M parameters, so one randomly initialized model (the explicit, seeded opt-in `random_seed=0`:
without weights the model refuses) is built per module. Its BatchNorm statistics are calibrated on random images
first: with fresh statistics (mean 0, var 1) the deep net maps every input to nearly the same score, which would
make comparisons between inputs unable to fail.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluator import biqa
from evaluator.biqa import BIQAError
from evaluator.biqa.koncept512 import (
    N_STATE_ENTRIES,
    N_STATE_VALUES,
    KonCept512,
    KonCept512BIQA,
    WeightsError,
    expected_shapes,
    load_koncept512_weights,
)
from evaluator.common.hashing import file_sha256 as sha256_file

H, W = 384, 512


def _smooth_images(n: int, seed: int) -> torch.Tensor:
    """`n` distinct RGB images in [0, 1] at 384x512: upsampled random blobs plus fine noise, varied contrast."""
    g = torch.Generator().manual_seed(seed)
    blobs = F.interpolate(torch.rand(n, 3, 6, 8, generator=g), size=(H, W), mode="bicubic", align_corners=False)
    contrast = torch.linspace(0.3, 1.0, n).view(n, 1, 1, 1)
    noise = torch.linspace(0.02, 0.2, n).view(n, 1, 1, 1) * torch.rand(n, 3, H, W, generator=g)
    return (0.5 + contrast * (blobs - 0.5) + noise).clamp(0, 1)


def _calibrate_batchnorm(net: nn.Module, images: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the batch statistics of `images` (one pass, dropout off)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one pass, exactly the batch statistics
            m.train()
    with torch.no_grad():
        net(images)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    net.eval()


@pytest.fixture(scope="module")
def model() -> KonCept512BIQA:
    m = KonCept512BIQA(random_seed=0)
    _calibrate_batchnorm(m.net, _smooth_images(4, seed=0) * 2 - 1)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two distinct RGB images in [0, 1] at the native 384x512 (not the calibration images)."""
    return _smooth_images(2, seed=1)


@pytest.fixture(scope="module")
def batch_scores(model: KonCept512BIQA, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.raw_score(images)


@pytest.fixture(scope="module")
def single_scores(model: KonCept512BIQA, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.raw_score(images[i : i + 1]) for i in range(len(images))])


# ---------------------------------------------------------------- layout


def test_state_dict_counts_names_and_shapes() -> None:
    shapes = expected_shapes()
    assert len(shapes) == N_STATE_ENTRIES == 1327
    assert sum(s.numel() for s in shapes.values()) == N_STATE_VALUES == 59_889_136
    assert sum(k.endswith("num_batches_tracked") for k in shapes) == 207
    spot = {
        "base.0.conv.weight": (32, 3, 3, 3),  # conv2d_1a
        "base.0.bn.running_var": (32,),
        "base.5.conv.weight": (192, 80, 3, 3),  # conv2d_4a
        "base.7.branch1.1.conv.weight": (64, 48, 5, 5),  # mixed_5b
        "base.7.branch3.1.conv.weight": (64, 192, 1, 1),
        "base.8.9.branch2.2.conv.weight": (64, 48, 3, 3),  # repeat (Block35 x10)
        "base.8.9.conv2d.bias": (320,),
        "base.9.branch1.2.conv.weight": (384, 256, 3, 3),  # mixed_6a
        "base.10.19.branch1.1.conv.weight": (160, 128, 1, 7),  # repeat_1 (Block17 x20)
        "base.10.19.conv2d.weight": (1088, 384, 1, 1),
        "base.11.branch2.2.conv.weight": (320, 288, 3, 3),  # mixed_7a
        "base.12.8.branch1.2.conv.weight": (256, 224, 3, 1),  # repeat_2 (Block8 x9)
        "base.13.conv2d.weight": (2080, 448, 1, 1),  # block8
        "base.14.conv.weight": (1536, 2080, 1, 1),  # conv2d_7b
        "base.14.bn.num_batches_tracked": (),
        "fc.0.weight": (2048, 1536),
        "fc.2.running_mean": (2048,),
        "fc.10.weight": (256,),
        "fc.12.weight": (1, 256),
        "fc.12.bias": (1,),
    }
    for name, shape in spot.items():
        assert tuple(shapes[name]) == shape, name
    assert not any(k.startswith(("base.8.10.", "base.10.20.", "base.12.9.", "base.16", "last_linear")) for k in shapes)
    # children 3, 6 (max pools) and 15 (avg pool) have no state
    assert {k.split(".")[1] for k in shapes if k.startswith("base.")} == {str(i) for i in range(15)} - {"3", "6"}


def test_backbone_keeps_the_top_left_8x8_pool_quirk() -> None:
    with torch.device("meta"):  # shapes only, no weights allocated, no arithmetic
        meta_net = KonCept512()
        feature_map = meta_net.base[:15](torch.empty(2, 3, H, W))
    pool = meta_net.base[15]
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 8 and pool.count_include_pad is False
    assert tuple(feature_map.shape) == (2, 1536, 10, 14)
    fmap = torch.randn(2, 1536, 10, 14)
    pooled = pool(fmap)
    assert tuple(pooled.shape) == (2, 1536, 1, 1)
    torch.testing.assert_close(pooled[:, :, 0, 0], fmap[:, :, :8, :8].mean(dim=(2, 3)))
    assert not torch.allclose(pooled[:, :, 0, 0], fmap.mean(dim=(2, 3)))


# ---------------------------------------------------------------- the BIQA contract


def test_info_and_registry(model: KonCept512BIQA) -> None:
    assert model.info.name == "koncept512" and model.info.needs_weights
    assert model.info.score_range == (0.0, 100.0) and model.info.differentiable
    assert model.info.weights_sha256 is None and "meaningless" in model.info.random_weights_note()
    assert model.info.needs_weights is True and model.info.random_weights_seed == 0
    assert "--random-weights 0" in model.info.random_weights_note()
    assert "koncept512" in biqa.available() and biqa.spec("koncept512").needs_weights


def test_no_weights_is_refused_and_random_weights_warn(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(biqa.MissingWeightsError, match="needs a weights file"):
        KonCept512BIQA(weights=None)
    with caplog.at_level("WARNING", logger="evaluator.biqa.koncept512"), torch.device("meta"):
        KonCept512BIQA(random_seed=3)
    assert any("RANDOM weights from seed 3" in r.getMessage() for r in caplog.records)


def test_scores_shape_and_spread(batch_scores: torch.Tensor) -> None:
    assert batch_scores.shape == (2,) and batch_scores.dtype == torch.float32
    assert torch.isfinite(batch_scores).all()
    # the comparisons below are meaningful only if different images get clearly different scores
    assert (batch_scores.max() - batch_scores.min()) > 1.0


def test_native_size_is_only_normalized(model: KonCept512BIQA, images: torch.Tensor, single_scores) -> None:
    with torch.no_grad():
        direct = model.net(images[1:2] * 2 - 1)
    torch.testing.assert_close(direct, single_scores[1:2], rtol=0, atol=1e-5)


def test_forward_is_the_clipped_raw_score(model: KonCept512BIQA, images: torch.Tensor, single_scores) -> None:
    with torch.no_grad():
        clipped = model(images[:1])
    assert clipped.shape == (1,)
    torch.testing.assert_close(clipped, single_scores[:1].clamp(0, 100), rtol=0, atol=0)


def test_eval_mode_is_deterministic(model: KonCept512BIQA, images: torch.Tensor, single_scores) -> None:
    assert not model.training
    with torch.no_grad():
        again = model.raw_score(images[:1])
    assert torch.equal(again, single_scores[:1])


def test_batch_equals_one_at_a_time(single_scores: torch.Tensor, batch_scores: torch.Tensor) -> None:
    """Batched and single scores agree far inside the kit's 0.01-point claims. Not bit-equal: oneDNN picks other
    kernels (and, channels_last, other blockings per thread count) for another batch size, and the random weights
    with calibrated batch norm magnify that rounding to a few 1e-4 points (measured up to 3.5e-4 once)."""
    torch.testing.assert_close(single_scores, batch_scores, rtol=0, atol=2e-3)


def test_other_sizes_are_resized_bilinear_antialiased(model: KonCept512BIQA, images: torch.Tensor) -> None:
    fine = 0.3 * torch.rand(1, 3, 600, 800, generator=torch.Generator().manual_seed(3))  # aliases if not filtered
    big = (F.interpolate(images[:1], size=(600, 800), mode="bicubic", align_corners=False) + fine).clamp(0, 1)
    explicit = F.interpolate(big, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        got = model.raw_score(big)
        want = model.raw_score(explicit)
    assert got.shape == (1,)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # the comparison can tell an antialiased resize from a plain bilinear one
    no_aa = F.interpolate(big, size=(H, W), mode="bilinear", align_corners=False)
    assert (no_aa - explicit).abs().mean() > 0.01


def test_gradient_wrt_input_is_finite_and_nonzero(model: KonCept512BIQA, images: torch.Tensor) -> None:
    x = F.interpolate(images[1:2], size=(300, 400), mode="bilinear", align_corners=False).requires_grad_(True)
    model.raw_score(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_bad_input_shape_is_rejected(model: KonCept512BIQA) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.raw_score(torch.rand(1, 1, H, W))
    with pytest.raises(ValueError):
        model.raw_score(torch.randint(0, 255, (1, 3, H, W), dtype=torch.uint8))


# ---------------------------------------------------------------- weight files


def test_real_checkpoint_round_trip(model: KonCept512BIQA, images: torch.Tensor, single_scores, tmp_path: Path) -> None:
    """torch.save(net.state_dict()) of a full model -> registry -> bitwise the same scores; hash recorded."""
    path = tmp_path / "koncept512.pth"
    torch.save(model.net.state_dict(), path)
    try:
        other = biqa.create("koncept512", weights=path)
        assert other.info.weights_sha256 == sha256_file(path) and len(other.info.weights_sha256) == 64
        assert other.info.random_weights_note() is None
        with torch.no_grad():
            scores = other.raw_score(images[:1])
        torch.testing.assert_close(scores, single_scores[:1], rtol=0, atol=0)
    finally:
        path.unlink(missing_ok=True)  # 240 MB: do not leave it in pytest's kept temp dirs


@pytest.fixture(scope="module")
def compact_random() -> dict[str, torch.Tensor]:
    return _compact_state(random=True)


@pytest.mark.parametrize("fmt", ["plain", "module_prefix", "wrapped"])
def test_checkpoint_formats_load_the_same_weights(fmt: str, compact_random, tmp_path: Path) -> None:
    """Each format yields exactly the source tensors under KonCept512's names, and builds a model holding them.

    Equal weights in the same eval-mode network give equal scores; `test_real_checkpoint_round_trip` runs that
    forward on a full-size file, so this test saves three 60M-parameter forwards.
    """
    state = compact_random
    if fmt == "module_prefix":
        payload: object = {f"module.{k}": v for k, v in state.items()}
    elif fmt == "wrapped":
        payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    else:
        payload = state
    path = tmp_path / f"koncept512_{fmt}.pth"
    torch.save(payload, path)
    loaded = load_koncept512_weights(path)
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    other = KonCept512BIQA(weights=path)
    assert other.info.weights_sha256 == sha256_file(path)
    held = other.net.state_dict()
    assert all(torch.equal(held[k], state[k]) for k in state)


def _compact_state(
    overrides: dict[str, torch.Tensor | None] | None = None, random: bool = False
) -> dict[str, torch.Tensor]:
    """A state dict with every KonCept512 key and shape whose tensors are views of a few shared storages, so
    the file is ~13 MB instead of 240 MB. `random`: distinct random values (BatchNorm scales and variances in
    [0.5, 1.5]); otherwise zeros. `overrides` replaces entries (None deletes them).
    """
    shapes = expected_shapes()
    g = torch.Generator().manual_seed(2)
    n = max(s.numel() for s in shapes.values())
    signed = 0.05 * torch.randn(n, generator=g) if random else torch.zeros(n)
    positive = 0.5 + torch.rand(4096, generator=g) if random else torch.zeros(4096)
    counters = torch.zeros(1, dtype=torch.long)

    def entry(k: str, s: torch.Size) -> torch.Tensor:
        if k.endswith("num_batches_tracked"):
            return counters[:1].view(s)
        if k.endswith(("bn.weight", "bn.running_var")) or (k.startswith("fc.") and k.endswith(("running_var",))):
            return positive[: s.numel()].view(s)
        return signed[: s.numel()].view(s)

    state = {k: entry(k, s) for k, s in shapes.items()}
    for k, v in (overrides or {}).items():
        if v is None:
            del state[k]
        else:
            state[k] = v
    return state


def _expect(path: Path, *needles: str) -> WeightsError:
    with pytest.raises(WeightsError) as info:
        load_koncept512_weights(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert isinstance(info.value, BIQAError)
    return info.value


def test_compact_state_is_valid_and_lacking_batch_counters_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "ok.pth"
    torch.save(_compact_state(), path)
    assert path.stat().st_size < 20_000_000
    assert len(load_koncept512_weights(path)) == N_STATE_ENTRIES
    old = {k: v for k, v in _compact_state().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    assert len(load_koncept512_weights(path)) == N_STATE_ENTRIES - 207


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.pth", "no such file", "--biqa-weights")
    with pytest.raises(WeightsError, match="no such file"):
        biqa.create("koncept512", weights=tmp_path / "nope.pth")
    _expect(tmp_path, "no such file")  # a directory is not a weights file


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(_compact_state(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    _expect(truncated, "cannot be read", "truncated")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    _expect(garbage, "cannot be read")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    _expect(empty, "cannot be read")


_RAN: list[str] = []


def _payload_would_run() -> None:
    _RAN.append("code ran")


class _Evil:
    def __reduce__(self):
        return (_payload_would_run, ())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the plain-pickle file; expected
def test_pickled_code_is_refused_not_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"base.0.conv.weight": _Evil()}, fh)
    _expect(path, "cannot be read")
    torch.save({"x": _Evil()}, path)
    _expect(path, "cannot be read")
    assert _RAN == []


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3), torch.zeros(2)], path)
    _expect(path, "holds a list", "not a state dict")
    torch.save(torch.zeros(3), path)
    _expect(path, "holds a Tensor")
    torch.save({"state_dict": [1, 2]}, path)  # a wrapper whose payload is not a mapping either
    _expect(path, "non-tensor values at 'state_dict'")


def test_non_tensor_values(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pth"
    torch.save(_compact_state({"fc.12.bias": None}) | {"epoch": 3, "arch": "koncept"}, path)
    _expect(path, "non-tensor values at 'arch', 'epoch'")


def test_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "missing.pth"
    torch.save(_compact_state({"fc.12.weight": None, "base.13.conv2d.bias": None}), path)
    err = _expect(path, "2 missing keys", "'base.13.conv2d.bias'", "'fc.12.weight'")
    assert "unexpected" not in str(err)
    torch.save({"fc.12.weight": torch.zeros(1, 256)}, path)  # first few listed, the rest counted
    _expect(path, "1119 missing keys", "'base.0.bn.bias'", "(and 1114 more)")


def test_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "extra.pth"
    extra = {"last_linear.weight": torch.zeros(1001, 1536), "last_linear.bias": torch.zeros(1001)}
    torch.save(_compact_state(extra), path)
    err = _expect(path, "2 unexpected keys", "'last_linear.bias'", "'last_linear.weight'")
    assert "missing" not in str(err)


def test_non_string_keys_are_reported_not_crashed_on(tmp_path: Path) -> None:
    path = tmp_path / "intkeys.pth"
    torch.save({0: torch.zeros(1), "fc.12.bias": torch.zeros(1)}, path)
    _expect(path, "1 unexpected keys: '0'", "missing keys")


def test_partial_module_prefix_is_not_stripped(tmp_path: Path) -> None:
    state = _compact_state()
    state["module.fc.12.bias"] = state.pop("fc.12.bias")
    path = tmp_path / "half_prefixed.pth"
    torch.save(state, path)
    _expect(path, "1 missing keys: 'fc.12.bias'", "1 unexpected keys: 'module.fc.12.bias'")


def test_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "shape.pth"
    wrong = {"fc.12.weight": torch.zeros(2, 256), "base.0.conv.weight": torch.zeros(32, 3, 5, 5)}
    torch.save(_compact_state(wrong), path)
    _expect(path, "2 shape mismatches", "fc.12.weight: expected (1, 256), got (2, 256)",
            "base.0.conv.weight: expected (32, 3, 3, 3), got (32, 3, 5, 5)")


def test_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "nan.pth"
    bad = torch.zeros(256)
    bad[7] = float("nan")
    torch.save(_compact_state({"fc.10.running_var": bad}), path)
    _expect(path, "NaN or infinite", "'fc.10.running_var'")
