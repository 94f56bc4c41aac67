"""PIQE port (evaluator/biqa/piqe.py) against the PyPI package `pypiqe` 1.2 (a port of MATLAB's `piqe`).

Parity images: the skimage / sklearn sample photos of tests/test_niqe.py (astronaut, coffee, motorcycle_left,
china, flower) plus chelsea and rocket, cropped to 512x384 (WxH), and their Gaussian-blurred, noisy and JPEG-20
versions. pypiqe converts with cv2.COLOR_BGR2GRAY, so it is given the BGR image (what cv2.imread returns).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch

from parity_images import VERSIONS, photo, to_tensor
from evaluator.biqa import BIQAError, available, create
from evaluator.biqa.piqe import MIN_SIZE, Piqe, PiqeGradientError, PiqeSizeError, gray_u8
from evaluator.config import task_from_dict
from submission.attacks import AttackError, get_attack
from attack_fixtures import RULES

PHOTOS = ("astronaut", "coffee", "motorcycle_left", "china", "flower", "chelsea", "rocket")


def reference(rgb: np.ndarray) -> float:
    """pypiqe's PIQE of an RGB uint8 image (0 = excellent, 100 = bad); only the parity tests need pypiqe."""
    pypiqe = pytest.importorskip("pypiqe", reason="pypiqe (installed by make install, --no-deps) is the PIQE reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-black image divides 0 / 0 in pypiqe
        return float(pypiqe.piqe(np.ascontiguousarray(rgb[..., ::-1]))[0])


@pytest.fixture(scope="module")
def model() -> Piqe:
    return create("piqe")


@functools.lru_cache(maxsize=None)
def versions_and_scores(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(versions, our PIQE (4,)) in VERSIONS order; ours scores the 4 as one batch."""
    rgb = photo(name)
    versions = {k: f(rgb) for k, f in VERSIONS.items()}
    return versions, create("piqe").piqe(to_tensor(*versions.values())).numpy()


@functools.lru_cache(maxsize=None)
def reference_scores(name: str) -> np.ndarray:
    """pypiqe's PIQE (4,) of the versions, in VERSIONS order."""
    versions, _ = versions_and_scores(name)
    return np.array([reference(v) for v in versions.values()])


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("name", PHOTOS)
def test_matches_pypiqe_within_one_point_on_photos_and_distortions(name: str) -> None:
    _, ours = versions_and_scores(name)
    ref = reference_scores(name)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1.0)


def opencv_5() -> object:
    """cv2, skipping the test unless it is OpenCV 5 or later (OpenCV 4 rounds gray to 14 bits, see piqe.py)."""
    cv2 = pytest.importorskip("cv2")
    if int(cv2.__version__.split(".")[0]) < 5:
        pytest.skip(f"OpenCV {cv2.__version__} rounds gray with 14-bit weights; the port follows OpenCV 5")
    return cv2


@pytest.mark.parametrize("name", PHOTOS)
def test_matches_pypiqe_to_rounding_with_opencv_5(name: str) -> None:
    """With OpenCV 5 the gray image is bit-exact, so only float64 summation order separates the two."""
    opencv_5()
    _, ours = versions_and_scores(name)
    ref = reference_scores(name)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", PHOTOS)
def test_blurred_photo_scores_lower_quality_than_clean(name: str, model: Piqe) -> None:
    versions, _ = versions_and_scores(name)
    with torch.no_grad():
        clean, blur = model(to_tensor(versions["clean"], versions["blur"])).tolist()
    assert clean > blur, (name, clean, blur)


@pytest.mark.parametrize("h, w", [(MIN_SIZE, MIN_SIZE), (17, 31), (250, 333), (100, 16)])
def test_sizes_that_need_padding_match_pypiqe(h: int, w: int, model: Piqe) -> None:
    opencv_5()
    rgb = np.ascontiguousarray(photo("astronaut")[40 : 40 + h, 100 : 100 + w])
    assert float(model.piqe(to_tensor(rgb))[0]) == pytest.approx(reference(rgb), abs=1e-8)


def test_dark_image_is_stretched_by_its_maximum_like_pypiqe(model: Piqe) -> None:
    opencv_5()
    dark = (photo("coffee")[:128, :160] // 5).astype(np.uint8)  # gray max about 51: PIQE rescales to 255
    bright = photo("coffee")[:128, :160]
    ours = model.piqe(to_tensor(dark, bright)).tolist()
    assert ours[0] == pytest.approx(reference(dark), abs=1e-8)
    assert ours[0] != pytest.approx(ours[1], abs=1e-3)


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_flat_images_have_no_active_block_and_score_piqe_100(value: int, model: Piqe) -> None:
    flat = np.full((48, 64, 3), value, np.uint8)
    with torch.no_grad():
        assert float(model.piqe(to_tensor(flat))[0]) == 100.0
        assert float(model(to_tensor(flat))[0]) == 0.0
    assert reference(flat) == 100.0


def test_gray_is_opencv_bgr2gray_bit_for_bit_on_every_colour() -> None:
    cv2 = opencv_5()
    for start in range(0, 256**3, 1 << 20):  # all 2^24 colours, 2^20 at a time
        v = np.arange(start, start + (1 << 20), dtype=np.int64)
        rgb = np.stack([v >> 16, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8).reshape(1024, 1024, 3)
        ref = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2GRAY)
        ours = gray_u8(to_tensor(rgb))[0].numpy()
        np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------------------------- contract
def test_quality_is_100_minus_piqe_and_forward_clips_raw(model: Piqe) -> None:
    versions, ours = versions_and_scores("china")
    x = to_tensor(*versions.values())
    raw, clipped = model.raw_score(x), model(x)
    assert raw.dtype == x.dtype and raw.shape == (4,)
    torch.testing.assert_close(raw.double(), torch.from_numpy(100.0 - ours), rtol=0, atol=1e-4)
    torch.testing.assert_close(clipped, raw.clamp(0, 100))
    assert model.raw_score(x.double()).dtype == torch.float64


def test_batch_equals_one_at_a_time_and_is_deterministic(model: Piqe) -> None:
    rgbs = [photo(n)[:200, :264] for n in ("astronaut", "china", "flower")]
    batch = model.raw_score(to_tensor(*rgbs))
    single = torch.cat([model.raw_score(to_tensor(r)) for r in rgbs])
    assert torch.equal(batch, single)
    assert torch.equal(batch, model.raw_score(to_tensor(*rgbs)))
    assert torch.equal(batch, create("piqe").raw_score(to_tensor(*rgbs)))


@pytest.mark.parametrize("h, w", [(MIN_SIZE - 1, 300), (300, MIN_SIZE - 1), (8, 8)])
def test_too_small_image_raises_a_clear_value_error(model: Piqe, h: int, w: int) -> None:
    with pytest.raises(ValueError, match=r"at least 16x16") as err:
        model(torch.rand(1, 3, h, w))
    assert isinstance(err.value, PiqeSizeError)
    assert f"{w}x{h}" in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(1, 1, 64, 64),
        torch.rand(3, 64, 64),
        torch.rand(1, 4, 64, 64),
        torch.randint(0, 255, (1, 3, 64, 64)),
        torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8),
        np.zeros((1, 3, 64, 64)),
    ],
)
def test_bad_input_shapes_and_types_raise_value_error(model: Piqe, bad: object) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(bad)


def test_asking_for_a_gradient_is_refused_and_no_grad_scoring_of_the_same_tensor_works(model: Piqe) -> None:
    x = to_tensor(photo("coffee")[:64, :64]).requires_grad_(True)
    with pytest.raises(PiqeGradientError, match="not differentiable") as err:
        model.raw_score(x)
    assert isinstance(err.value, BIQAError)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def test_registry_metadata_and_task_config(model: Piqe) -> None:
    assert "piqe" in available()
    assert model.info.name == "piqe"
    assert model.info.score_range == (0.0, 100.0) and not model.info.differentiable
    assert model.info.differentiable is False
    assert create("brisque").info.differentiable is True
    with pytest.raises(BIQAError, match="piqe: takes no --biqa-weights"):
        create("piqe", weights="piqe.pth")
    assert task_from_dict({"biqa": {"model": "piqe"}}).biqa.model == "piqe"


# ---------------------------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("method", ["fgsm", "ifgsm", "pgd-l2", "korhonen"])
def test_gradient_attacks_refuse_a_non_differentiable_model(method: str, model: Piqe) -> None:
    x = to_tensor(photo("coffee")[:64, :64])
    with pytest.raises(AttackError, match=r"gradient attack.*'piqe' is not differentiable"):
        get_attack(method)().run(x, model, **RULES)


def test_attacks_that_call_the_model_with_gradients_directly_get_the_models_error(model: Piqe) -> None:
    """pgd-dct is not a GradientAttack subclass; PIQE itself refuses to build a graph."""
    x = to_tensor(photo("coffee")[:64, :64])
    with pytest.raises(BIQAError, match="not differentiable"):
        get_attack("pgd-dct")(iters=1).run(x, model, **RULES)


@pytest.mark.parametrize("method", ["identity", "blur", "noise", "jpeg"])
def test_attacks_without_gradients_still_run_against_piqe(method: str, model: Piqe) -> None:
    x = to_tensor(photo("coffee")[:64, :64])
    result = get_attack(method)().run(x, model, **RULES)
    assert result.x_adv.shape == x.shape and torch.isfinite(result.raw_after).all()
