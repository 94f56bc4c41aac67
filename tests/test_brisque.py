"""BRISQUE (evaluator.biqa.brisque) against the PyPI package `brisque` 0.2.0, plus its NSS building blocks.

The reference is the package's own feature functions, cv2's resize and its libsvm prediction; its `score()`
fails on NumPy 2 (float() of 1-element arrays), so the test assembles those pieces itself.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch
from PIL import Image

from evaluator.biqa import create
from evaluator.biqa import spec as biqa_spec
from evaluator.biqa import natural_scene as nss
from evaluator.biqa.brisque import Brisque, BrisqueModelError, brisque_model_dir, half_scale

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")
skimage_color = pytest.importorskip("skimage.color")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

CROP = (192, 256)  # small crops keep the reference (about 0.1 s per 512x384 image) fast


# ---------------------------------------------------------------------------------------------- reference
@pytest.fixture(scope="module")
def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brisque import BRISQUE

        return BRISQUE()


def reference_features(ref, rgb: np.ndarray) -> np.ndarray:
    """The package's 36 features: skimage gray, features at full scale and at cv2 INTER_CUBIC half scale."""
    gray = skimage_color.rgb2gray(rgb)
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = list(ref.calculate_brisque_features(gray, 7, 7 / 6)) + list(
            ref.calculate_brisque_features(half, 7, 7 / 6)
        )
    # NumPy 2 workaround: some entries are 1-element arrays, which float() no longer accepts
    return np.array([np.ravel(np.asarray(v, dtype=np.float64))[0] for v in raw])


def reference_score(ref, rgb: np.ndarray) -> float:
    return float(ref.calculate_image_quality_score(reference_features(ref, rgb)))


# ---------------------------------------------------------------------------------------------- images
def _sample_photos() -> dict[str, np.ndarray]:
    data_dir = Path(skimage_data.data_dir)
    photos = {}
    for name in ["astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg"]:
        photos[name] = np.asarray(Image.open(data_dir / name).convert("RGB"))
    for path in sklearn_datasets.load_sample_images().filenames:
        photos[Path(path).name] = np.asarray(Image.open(path).convert("RGB"))
    h, w = CROP
    return {name: np.ascontiguousarray(rgb[:h, :w]) for name, rgb in photos.items()}


def _blur(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(scipy.ndimage.gaussian_filter(rgb.astype(np.float64), (1.5, 1.5, 0))), 0, 255).astype(
        np.uint8
    )


def _noise(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    noisy = rgb + np.random.default_rng(seed).normal(0, 12, rgb.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int = 20) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    out = {}
    for name, rgb in _sample_photos().items():
        out[name] = rgb
        out[name + "+blur"] = _blur(rgb)
        out[name + "+noise"] = _noise(rgb)
        out[name + "+jpeg20"] = _jpeg(rgb)
    return out


def to_batch(rgbs: list[np.ndarray], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(r)).permute(2, 0, 1) for r in rgbs]).to(dtype) / 255


@pytest.fixture(scope="module")
def reference_scores(reference, images) -> dict[str, float]:
    return {name: reference_score(reference, rgb) for name, rgb in images.items()}


@pytest.fixture(scope="module")
def model() -> Brisque:
    return Brisque()


@pytest.fixture(scope="module")
def model64() -> Brisque:
    return Brisque(dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scores_match_package_on_photos_and_distortions(images, reference_scores, dtype):
    names = sorted(images)
    model = Brisque(dtype=dtype)
    with torch.no_grad():
        ours = model.brisque(to_batch([images[n] for n in names])).numpy()
    expected = np.array([reference_scores[n] for n in names])
    diff = np.abs(ours - expected)
    assert len(names) == 28
    assert np.ptp(expected) > 20, "the set should span good and bad quality"
    # the issue allows 0.5 BRISQUE points; a float64 port should be far inside
    assert diff.max() < 0.01, dict(zip(names, diff.round(4)))  # issue 16: within 0.01 points


def test_features_match_package_feature_by_feature(reference, images, model64):
    for name in ["coffee.png", "china.jpg+jpeg20", "astronaut.png+noise"]:
        expected = reference_features(reference, images[name])
        with torch.no_grad():
            ours = model64.features(to_batch([images[name]], torch.float64))[0].numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9, err_msg=name)


def test_svr_matches_libsvm_on_scaled_features(reference, images, model64):
    features = reference_features(reference, images["flower.jpg"])
    ours = model64.svr(torch.from_numpy(features)[None]).item()
    assert ours == pytest.approx(float(reference.calculate_image_quality_score(features)), abs=1e-9)


def test_flat_regions_match_package(reference, model):
    """Flat areas make the package's MSCN signs rounding noise; we reproduce them (see brisque.py)."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (96, 128, 3)).astype(np.uint8)
    rgb[10:60, 20:90] = (200, 120, 40)  # flat patch
    rgb[70:, :50] = 0  # black patch
    rgb[:30, 100:] = 255  # saturated patch
    with torch.no_grad():
        ours = model.brisque(to_batch([rgb])).item()
    assert ours == pytest.approx(reference_score(reference, rgb), abs=1e-3)


def test_half_scale_is_cv2_inter_cubic():
    rng = np.random.default_rng(0)
    for h, w in [(64, 80), (33, 35), (37, 41), (31, 33), (16, 17)]:
        gray = rng.random((h, w))
        expected = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
        ours = half_scale(torch.from_numpy(gray)[None])[0].numpy()
        assert ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)


def test_float32_and_float64_inputs_of_an_8bit_image_score_the_same(images, model):
    rgb = images["rocket.jpg"]
    with torch.no_grad():
        a = model.brisque(to_batch([rgb], torch.float32)).item()
        b = model.brisque(to_batch([rgb], torch.float64)).item()
    assert a == b


# ---------------------------------------------------------------------------------------------- batching
def test_batch_gives_the_same_scores_as_one_at_a_time(images, model):
    names = ["astronaut.png", "coffee.png+blur", "china.jpg+noise", "flower.jpg+jpeg20", "chelsea.png"]
    batch = to_batch([images[n] for n in names])
    with torch.no_grad():
        together = model.raw_score(batch)
        alone = torch.cat([model.raw_score(batch[i : i + 1]) for i in range(len(names))])
        chunked = Brisque(chunk_size=3).raw_score(batch)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-4)
    torch.testing.assert_close(chunked, alone, rtol=0, atol=1e-4)


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (40, 200)])
def test_small_and_odd_sizes_are_finite(size, model):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.isfinite(model.raw_score(x)).all()


# ---------------------------------------------------------------------------------------------- gradients
def test_gradient_is_finite_and_nonzero_on_a_photo(images, model):
    x = to_batch([images["coffee.png"][:64, :96]]).requires_grad_(True)
    model.raw_score(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 0


def test_gradient_matches_finite_differences_through_the_shape_fit():
    model = Brisque(dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = (0.5 + 0.25 * torch.rand(1, 3, 40, 48, generator=gen, dtype=torch.float64)).requires_grad_(True)
    direction = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(model.raw_score(x).sum(), x)
    h = 1e-6
    with torch.no_grad():
        numeric = (model.raw_score(x + h * direction) - model.raw_score(x - h * direction)).item() / (2 * h)
    analytic = (grad * direction).sum().item()
    assert abs(numeric) > 1e-3
    assert analytic == pytest.approx(numeric, rel=1e-4)


def test_invert_phi_is_the_root_with_the_implicit_gradient():
    ratio = torch.tensor([0.2, 0.45, 0.6, 0.7, 0.74], dtype=torch.float64, requires_grad=True)
    alpha = nss.invert_phi(ratio)
    torch.testing.assert_close(nss.phi(alpha.detach()), ratio.detach(), rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(alpha.sum(), ratio)
    torch.testing.assert_close(grad, 1 / nss.phi_derivative(alpha.detach()), rtol=1e-8, atol=0)
    assert torch.autograd.gradcheck(nss.invert_phi, (ratio,))


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_image_gives_finite_score_and_gradient(value, model):
    x = torch.full((1, 3, 48, 48), value, requires_grad=True)
    score = model.raw_score(x)
    score.sum().backward()
    assert torch.isfinite(score).all()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------- interface
def test_registry_builds_brisque_with_metadata_and_clipped_forward(images):
    model = create("brisque")
    assert isinstance(model, Brisque)
    assert model.info == biqa_spec("brisque").info(weights_sha256=model.info.weights_sha256)  # the registry's facts
    directory = brisque_model_dir()
    digest = hashlib.sha256((directory / "svm.txt").read_bytes() + (directory / "normalize.pickle").read_bytes())
    assert model.info.weights_sha256 == digest.hexdigest()
    x = torch.cat([to_batch([images["astronaut.png"]]), torch.rand(1, 3, *CROP, generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        raw, clipped = model.raw_score(x), model(x)
    torch.testing.assert_close(clipped, raw.clamp(0, 100))
    torch.testing.assert_close(raw, 100 - model.brisque(x).float())
    assert ((clipped >= 0) & (clipped <= 100)).all()


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(3, 64, 64),
        torch.rand(1, 1, 64, 64),
        torch.randint(0, 255, (1, 3, 64, 64)),
        torch.rand(1, 3, 15, 64),
    ],
)
def test_bad_input_is_rejected(bad, model):
    with pytest.raises(ValueError):
        model.raw_score(bad)


def _copy_model_dir(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(brisque_model_dir(), target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def test_missing_or_malformed_model_files_name_the_file(tmp_path):
    directory = _copy_model_dir(tmp_path)
    assert Brisque(model_dir=directory).info.weights_sha256 == create("brisque").info.weights_sha256

    (directory / "svm.txt").write_text("svm_type c_svc\nkernel_type rbf\nSV\n")
    with pytest.raises(BrisqueModelError, match="svm.txt"):
        Brisque(model_dir=directory)

    (directory / "svm.txt").unlink()
    with pytest.raises(BrisqueModelError, match="svm.txt"):
        Brisque(model_dir=directory)


def test_normalize_pickle_may_not_build_objects(tmp_path):
    directory = _copy_model_dir(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (directory / "normalize.pickle").write_bytes(pickle.dumps({"min_": Evil(), "max_": [1.0] * 36}))
    with pytest.raises(BrisqueModelError, match="normalize.pickle"):
        Brisque(model_dir=directory)


# ---------------------------------------------------------------------------------------------- NSS blocks
def test_gaussian_filter_matches_scipy():
    rng = np.random.default_rng(0)
    img = rng.random((23, 31))
    kernel = nss.gaussian_kernel1d(7, 7 / 6)
    k2 = np.outer(kernel.numpy(), kernel.numpy())
    x = torch.from_numpy(img)
    np.testing.assert_allclose(
        nss.gaussian_filter(x, kernel, "zeros").numpy(), scipy.signal.convolve2d(img, k2, "same"), atol=1e-14
    )
    for padding, mode in [("replicate", "nearest"), ("symmetric", "reflect"), ("mirror", "mirror")]:
        np.testing.assert_allclose(
            nss.gaussian_filter(x, kernel, padding).numpy(),
            scipy.ndimage.correlate(img, k2, mode=mode),
            atol=1e-14,
            err_msg=padding,
        )
    with pytest.raises(ValueError, match="padding"):
        nss.gaussian_filter(x, kernel, "wrap")  # type: ignore[arg-type]


def test_pair_products_crop_and_circular():
    m = torch.randn(2, 6, 7, dtype=torch.float64)
    h, v, d1, d2 = nss.pair_products(m, "crop")
    torch.testing.assert_close(h, m[..., :, :-1] * m[..., :, 1:])
    torch.testing.assert_close(d2, m[..., 1:, :-1] * m[..., :-1, 1:])
    circ = nss.pair_products(m, "circular").numpy()
    a = m.numpy()
    np.testing.assert_allclose(circ[:, 0], a * np.roll(a, 1, axis=-1))
    np.testing.assert_allclose(circ[:, 1], a * np.roll(a, 1, axis=-2))
    np.testing.assert_allclose(circ[:, 2], a * np.roll(np.roll(a, 1, axis=-2), 1, axis=-1))
    np.testing.assert_allclose(circ[:, 3], a * np.roll(np.roll(a, 1, axis=-2), -1, axis=-1))


def test_aggd_fit_matches_package_fit(reference):
    rng = np.random.default_rng(1)
    sample = rng.standard_t(4, (60, 70)) * 0.3 + 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alpha, mean, sl, sr = (np.ravel(np.asarray(v, dtype=float))[0] for v in reference.asymmetric_generalized_gaussian_fit(sample))
    fit = nss.aggd_fit(torch.from_numpy(sample))
    assert fit.alpha.item() == pytest.approx(alpha, rel=1e-7)
    assert fit.mean.item() == pytest.approx(mean, rel=1e-7)
    assert fit.sigma_l_sq.item() == pytest.approx(sl**2, rel=1e-12)
    assert fit.sigma_r_sq.item() == pytest.approx(sr**2, rel=1e-12)


def test_aggd_moments_of_an_all_zero_map_are_finite():
    x = torch.zeros(3, 8, 8, requires_grad=True)
    fit = nss.aggd_fit(x)
    total = fit.alpha.sum() + fit.mean.sum() + fit.sigma_l_sq.sum() + fit.sigma_r_sq.sum()
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------- fast paths
def _retina_crop() -> np.ndarray:
    """A real photo with large flat black borders (tens of thousands of vanishing MSCN pixels)."""
    rgb = np.asarray(Image.open(Path(skimage_data.data_dir) / "retina.jpg").convert("RGB"))
    return np.ascontiguousarray(rgb[:192, :256])


def _gray_and_stats(rgb: np.ndarray):
    from evaluator.biqa import brisque as brisque_module

    gray = brisque_module.package_gray(brisque_module.to_float64_on_8bit_grid(to_batch([rgb])))
    kernel = nss.gaussian_kernel1d(7, 7 / 6)
    mu, sigma = nss.local_mean_and_deviation(gray, kernel)
    return gray, mu, sigma


def test_package_gray_is_skimage_rgb2gray_bit_for_bit(images):
    from evaluator.biqa.brisque import package_gray, to_float64_on_8bit_grid

    rgbs = [images["astronaut.png"], images["china.jpg+jpeg20"], _retina_crop()[: CROP[0], : CROP[1]]]
    rgbs = [r[: min(x.shape[0] for x in rgbs), : min(x.shape[1] for x in rgbs)] for r in rgbs]
    for dtype in (torch.float32, torch.float64):
        gray = package_gray(to_float64_on_8bit_grid(to_batch(rgbs, dtype))).numpy()
        for got, rgb in zip(gray, rgbs):
            assert np.array_equal(got, skimage_color.rgb2gray(rgb))


@pytest.mark.parametrize("source", ["retina", "astronaut+jpeg20", "flat-and-inf"])
def test_vanishing_pixels_fast_path_equals_the_definition(source, images):
    from evaluator.biqa.brisque import vanishing_mscn_pixels

    rgb = _retina_crop() if source == "retina" else images["astronaut.png+jpeg20"] if "jpeg" in source else None
    if rgb is None:
        rgb = np.full((40, 48, 3), 128, np.uint8)
        rgb[:, 24:] = 37
    gray, mu, sigma = _gray_and_stats(rgb)
    if source == "flat-and-inf":
        gray = gray.clone()
        gray[0, 5, 5] = float("inf")  # no global bound: every pixel gets the exact test
    rms = torch.sqrt(sigma * sigma + mu * mu)
    expected = (((gray - mu).abs() <= 1e-11 * rms) & ((gray != 0) | (mu != 0))).nonzero(as_tuple=True)
    got = vanishing_mscn_pixels(gray, mu, sigma)
    assert len(got) == 3 and all(torch.equal(a, b) for a, b in zip(got, expected))
    if source != "astronaut+jpeg20":
        assert expected[0].numel() > 100


def test_flat_windows_at_equals_the_full_map_on_both_paths():
    from evaluator.biqa.brisque import flat_window_map, flat_windows_at

    gen = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 3, (2, 40, 50), generator=gen).double()
    gray[0, 5:20, 5:30] = 1
    gray[1, :12, :12] = 2
    every = torch.ones_like(gray, dtype=torch.bool).nonzero(as_tuple=True)
    full = flat_window_map(gray)
    few = torch.randperm(every[0].numel(), generator=gen)[:40]  # gathered windows
    many = torch.arange(every[0].numel())  # whole-map path
    inside_flat = full[every].nonzero().squeeze(1)  # flat windows only
    for pick in (few, many, inside_flat):
        where = tuple(i[pick] for i in every)
        assert torch.equal(flat_windows_at(gray, where), full[where])
    assert int(full.sum()) > 0


def test_no_grad_fast_paths_give_the_graph_paths_values():
    from evaluator.biqa.brisque import MSCN_C, match_package_where_mscn_vanishes

    gray, _, _ = _gray_and_stats(_retina_crop())
    kernel = nss.gaussian_kernel1d(7, 7 / 6)
    with torch.no_grad():
        mu, sigma = nss.local_mean_and_deviation(gray, kernel)
        fast = match_package_where_mscn_vanishes((gray - mu) / (sigma + MSCN_C), gray, mu, sigma)
    leaf = gray.clone().requires_grad_()
    mu_g, sigma_g = nss.local_mean_and_deviation(leaf, kernel)
    slow = match_package_where_mscn_vanishes((leaf - mu_g) / (sigma_g + MSCN_C), leaf, mu_g, sigma_g)
    assert torch.equal(mu, mu_g.detach()) and torch.equal(sigma, sigma_g.detach())
    assert torch.equal(fast, slow.detach())
    assert not torch.equal(fast, (gray - mu) / (sigma + MSCN_C))  # the emulation did change values here


def test_scores_with_and_without_a_graph_agree(model, model64):
    """Without a graph, features come from the compiled float64 kernels (`brisque_fast`): equal to the float64
    graph path up to summation order, and within float32 rounding of the default (float32 moments) graph path."""
    batch = to_batch([_retina_crop()])  # flat borders: the emulation's fast and graph paths both run
    with torch.no_grad():
        fast = model.brisque(batch)
        fast64 = model64.brisque(batch)
    torch.testing.assert_close(fast, fast64, rtol=0, atol=0)  # no graph: float64 whatever the model's dtype
    leaf = batch.clone().requires_grad_()
    slow = model64.brisque(leaf)
    slow.sum().backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(fast, model.brisque(batch.clone().requires_grad_()).detach(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_scores_do_not_depend_on_the_thread_count(images, threads):
    """Each image is one sequential computation: any `threads` (and torch's own count) gives the same bits."""
    names = ["astronaut.png", "coffee.png+blur", "china.jpg+noise", "flower.jpg+jpeg20", "chelsea.png"]
    batch = to_batch([images[n] for n in names])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = Brisque(threads=1).raw_score(batch)
        torch.set_num_threads(2)
        with torch.no_grad():
            many = Brisque(threads=threads).raw_score(batch)
            alone = torch.cat([Brisque(threads=threads).raw_score(batch[i : i + 1]) for i in range(len(names))])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many) and torch.equal(one, alone)
    assert torch.get_num_threads() == before


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads"):
        Brisque(threads=0)
