"""BRISQUE (Mittal, Moorthy, Bovik 2012) in torch, with the pre-trained SVR of the PyPI package `brisque` 0.2.0.

Pipeline (identical to the package's `BRISQUE.score`, batched and differentiable):
1. gray = 0.2125 R + 0.7154 G + 0.0721 B (skimage `rgb2gray`) of the RGB input in [0, 1];
2. at full scale and at half scale (cv2.resize fx=fy=0.5 INTER_CUBIC, i.e. 4-tap kernel
   [-3/32, 19/32, 19/32, -3/32] at stride 2 with replicated borders), 18 features: MSCN with a 7x7 Gaussian
   (sigma 7/6, zero-padded 'same'), C = 1/255; AGGD fits (alpha, (sigma_l^2 + sigma_r^2)/2) of the MSCN map and
   (alpha, mean, sigma_l^2, sigma_r^2) of its four pair-product maps;
3. scale the 36 features to [-1, 1] with `normalize.pickle` (min_, max_);
4. epsilon-SVR with RBF kernel from `svm.txt` (libsvm format): BRISQUE = sum_i coef_i exp(-gamma |sv_i - f|^2) - rho.
Quality (kit orientation, higher = better) = 100 - BRISQUE; `forward` clips it to [0, 100].

Parity: the package's features are discontinuous at rounding level where the MSCN vanishes (flat windows,
linear ramps: the AGGD fit splits coefficients by sign), so we reproduce its arithmetic there, and its gray
image bit for bit (8-bit inputs read as k * (1/255), numpy's `rgb @ coeffs`); elsewhere a float64 port agrees
to ~1e-12. Measured: < 1e-4 BRISQUE points on sample photos and their blurred / noisy / JPEG-20 versions.

The two model files are read at run time from the installed package's directory, located with
`importlib.util.find_spec` without importing the package (which imports OpenCV).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import torch

import evaluator.biqa.natural_scene as nss
from evaluator.biqa.base import BIQAModel
from evaluator.biqa.registry import BIQAError, spec

GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray (ITU-R BT.709)
MSCN_C = 1 / 255
KERNEL_SIZE = 7
KERNEL_SIGMA = 7 / 6
HALF_SCALE_TAPS = (-0.09375, 0.59375, 0.59375, -0.09375)  # cv2 INTER_CUBIC (A = -0.75) at offset 0.5
N_FEATURES = 36
MIN_SIZE = 16  # the half scale must still hold a 7x7 window


class BrisqueModelError(BIQAError):
    """The `brisque` package's model files are missing or malformed (the message names the file and the fix)."""


@dataclass(frozen=True)
class SVRModel:
    """An epsilon-SVR with RBF kernel: prediction = dual_coef . exp(-gamma |sv - x|^2) - rho."""

    support_vectors: torch.Tensor  # (n_sv, n_features) float64
    dual_coef: torch.Tensor  # (n_sv,) float64
    rho: float
    gamma: float


def brisque_model_dir() -> Path:
    """Directory holding `svm.txt` and `normalize.pickle` of the installed `brisque` package (not imported)."""
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise BrisqueModelError(
            "brisque: the PyPI package 'brisque' (which ships the pre-trained SVR) is not installed; "
            "install it with `pip install brisque==0.2.0`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def load_svr(path: Path) -> SVRModel:
    """Parse a libsvm model file (`svm_type epsilon_svr`, `kernel_type rbf`, dense 1-based indices)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise BrisqueModelError(f"{path}: cannot read the SVR model ({exc}); reinstall `brisque==0.2.0`") from exc
    lines = text.splitlines()
    header: dict[str, str] = {}
    try:
        start = lines.index("SV") + 1
    except ValueError:
        raise BrisqueModelError(f"{path}: no 'SV' line, not a libsvm model; reinstall `brisque==0.2.0`") from None
    for line in lines[: start - 1]:
        key, _, value = line.partition(" ")
        header[key] = value.strip()
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise BrisqueModelError(
            f"{path}: expected svm_type epsilon_svr and kernel_type rbf, got {header.get('svm_type')!r} and "
            f"{header.get('kernel_type')!r}; reinstall `brisque==0.2.0`"
        )
    coefs: list[float] = []
    rows: list[list[float]] = []
    try:
        for number, line in enumerate(lines[start:], start=start + 1):
            if not line.strip():
                continue
            fields = line.split()
            row = [0.0] * N_FEATURES
            for field in fields[1:]:
                index, _, value = field.partition(":")
                row[int(index) - 1] = float(value)
            coefs.append(float(fields[0]))
            rows.append(row)
        rho, gamma, total = float(header["rho"]), float(header["gamma"]), int(header["total_sv"])
    except (KeyError, ValueError, IndexError) as exc:
        raise BrisqueModelError(f"{path}: malformed libsvm model ({exc}); reinstall `brisque==0.2.0`") from exc
    if len(rows) != total or total == 0:
        raise BrisqueModelError(f"{path}: header says {total} support vectors, found {len(rows)}")
    return SVRModel(
        support_vectors=torch.tensor(rows, dtype=torch.float64),
        dual_coef=torch.tensor(coefs, dtype=torch.float64),
        rho=rho,
        gamma=gamma,
    )


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numbers (refuses every class or function)."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_feature_range(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(min_, max_) feature scaling vectors (36,) float64 from the package's `normalize.pickle`."""
    try:
        data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
        lo = torch.tensor([float(v) for v in data["min_"]], dtype=torch.float64)
        hi = torch.tensor([float(v) for v in data["max_"]], dtype=torch.float64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise BrisqueModelError(
            f"{path}: cannot read the feature scaling (dict with 36-long 'min_' and 'max_') ({exc}); "
            "reinstall `brisque==0.2.0`"
        ) from exc
    if lo.shape != (N_FEATURES,) or hi.shape != (N_FEATURES,) or not bool((hi > lo).all()):
        raise BrisqueModelError(f"{path}: 'min_'/'max_' must be {N_FEATURES} values with max_ > min_")
    return lo, hi


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, H, W): skimage `rgb2gray` weights 0.2125, 0.7154, 0.0721."""
    r, g, b = GRAY_WEIGHTS
    return x[:, 0] * r + x[:, 1] * g + x[:, 2] * b


def package_gray(x64: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float64 -> (N, H, W): `rgb2gray` with skimage's own arithmetic (numpy `rgb @ coeffs`).

    numpy's matmul rounds differently from a plain weighted sum in about 1 pixel in 5 (1 ulp); that matters
    only where the MSCN vanishes (see `match_package_where_mscn_vanishes`), but there it flips signs. The value
    is numpy's (`(N, H, W, 3) @ (3,)`, bit-identical to skimage's per-image `(H, W, 3) @ (3,)`); the
    gradient is that of `rgb_to_gray` (computed only when `x64` requires a gradient).
    """
    with torch.no_grad():
        coeffs = np.array(GRAY_WEIGHTS, dtype=np.float64)
        rgb = x64.detach().permute(0, 2, 3, 1).contiguous().cpu().numpy()
        exact = torch.from_numpy(rgb @ coeffs).to(x64.device)  # numpy's own loop; (N*H*W, 3) @ (3,) is BLAS
    if not x64.requires_grad:
        return exact
    gray = rgb_to_gray(x64)
    return gray + (exact - gray.detach())


def to_float64_on_8bit_grid(x: torch.Tensor) -> torch.Tensor:
    """`x` in float64, with values within rounding of k/255 set to exactly k * (1/255) (value only).

    The reference reads 8-bit images with skimage's `img_as_float`, i.e. as k * (1/255) in float64 (which is
    not k / 255 for 24 of the 256 levels), and its features are discontinuous at rounding level where the
    MSCN vanishes (see `match_package_where_mscn_vanishes`). Snapping makes float32 and float64 tensors of an
    8-bit image score exactly as the package scores the image. Off-grid values (e.g. adversarial
    perturbations) are left as they are; the gradient is the identity either way.
    """
    if x.dtype not in (torch.float32, torch.float64):
        return x.to(torch.float64)
    tolerance = 3e-5 if x.dtype == torch.float32 else 1e-9  # float32 rounding of k/255 is below 1.5e-5 * 255
    with torch.no_grad():
        scaled = x.detach() * 255
        levels = scaled.round()
        offset = (scaled - levels).abs_()
        exact = levels.double().mul_(1 / 255)
        if offset.numel() and float(offset.max()) <= tolerance:  # all on the grid (a float max is cheap)
            snapped = exact
        else:
            snapped = torch.where(offset <= tolerance, exact, x.detach().to(torch.float64))
    if not x.requires_grad:
        return snapped
    x64 = x.to(torch.float64)
    return x64 + (snapped - x64.detach())


def half_scale(gray: torch.Tensor) -> torch.Tensor:
    """cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=INTER_CUBIC) of the last two dims.

    Output size round-half-even(H / 2) x round-half-even(W / 2) (cvRound); output pixel d takes input pixels
    2d-1 .. 2d+2 (clamped to the image: replicated borders) with weights HALF_SCALE_TAPS.
    """

    h, w = gray.shape[-2:]
    oh, ow = round(h / 2), round(w / 2)  # Python rounds half to even, like cvRound
    padded = torch.nn.functional.pad(gray.unsqueeze(-3), (1, 2, 1, 2), mode="replicate").squeeze(-3)
    rows = None
    for k, weight in enumerate(HALF_SCALE_TAPS):  # horizontal pass first, as cv2
        term = padded[..., k : k + 2 * ow : 2] * weight
        rows = term if rows is None else rows + term
    out = None
    for k, weight in enumerate(HALF_SCALE_TAPS):
        term = rows[..., k : k + 2 * oh : 2, :] * weight
        out = term if out is None else out + term
    return out


def package_kernel2d(size: int = KERNEL_SIZE, sigma: float = KERNEL_SIGMA) -> np.ndarray:
    """The package's `gaussian_kernel2d` (numpy float64), bit for bit."""
    y, x = np.indices((size, size)) - int(size / 2)
    kernel = 1 / (2 * np.pi * sigma**2) * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return kernel / np.sum(kernel)


def vanishing_mscn_pixels(
    gray64: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, diff: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """Indices (as `nonzero(as_tuple=True)`) where x - mu is zero up to float64 rounding: flat windows and
    windows whose weighted deviations cancel (linear ramps, e.g. in JPEG blocks). Exactly zero windows
    (x = mu = 0, where both implementations give exactly 0) are left out.

    The rounding noise of mu is below 49 ulp of the window's largest value, i.e. below 4e-13 sqrt(K * x^2);
    the threshold 1e-11 sqrt(sigma^2 + mu^2) keeps a margin, and true deviations of 8-bit images are far larger.
    Fast path: sigma^2 + mu^2 <= |K * x^2 - mu^2| + mu^2 <= 3 max x^2, so only pixels with
    |x - mu| <= 1e-11 sqrt(3 max x^2) (a superset, usually tiny) get the exact test. `diff` = x - mu if known.
    """
    return torch.unravel_index(_vanishing_linear(gray64, mu, sigma, diff), gray64.shape)


def _vanishing_linear(
    gray64: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, diff: torch.Tensor | None = None
) -> torch.Tensor:
    """`vanishing_mscn_pixels` as indices into the flattened map (1-D int64; gathers by `take` are cheap)."""
    with torch.no_grad():
        diff = gray64 - mu if diff is None else diff
        bound = 1e-11 * 1.001 * math.sqrt(3 * float(gray64.abs().max()) ** 2 + nss.TINY) if gray64.numel() else 0.0
        magnitude = diff.abs()
        if math.isfinite(bound) and magnitude.numel() and float(magnitude.min()) > bound:  # the usual case
            return torch.zeros(0, dtype=torch.long, device=gray64.device)
        if math.isfinite(bound):
            candidates = (magnitude.reshape(-1) <= bound).nonzero().squeeze(1)
        else:  # inf or nan in the image: test every pixel
            candidates = torch.arange(gray64.numel(), device=gray64.device)
        if candidates.numel() == 0:
            return candidates
        x, m, s = (t.reshape(-1).take(candidates) for t in (gray64, mu, sigma))
        rms = torch.sqrt(s * s + m * m)
        suspect = ((x - m).abs() <= 1e-11 * rms) & ((x != 0) | (m != 0))
        return candidates[suspect]


def package_mscn_at(gray64: torch.Tensor, where: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The package's MSCN values at pixels `where` of the gray image (..., H, W), float64, bit for bit.

    Gathers each pixel's zero-padded 7x7 window and runs the package's own arithmetic on it:
    scipy.signal.convolve2d of the windows laid side by side ('valid', one output per window) for mu and for
    K * x^2, then (x - mu) / (sqrt(|mu^2 - K * x^2|) + C).
    """
    half = (KERNEL_SIZE - 1) // 2
    padded = torch.nn.functional.pad(gray64, (half, half, half, half)).contiguous()
    strides = torch.tensor(padded.stride(), device=gray64.device)
    corner = sum(index * stride for index, stride in zip(where, strides))  # window's top-left in `padded`
    offsets = (torch.arange(KERNEL_SIZE, device=gray64.device)[:, None] * strides[-2]) + torch.arange(
        KERNEL_SIZE, device=gray64.device
    ) * strides[-1]
    windows = padded.reshape(-1).take(corner[:, None, None] + offsets).cpu().numpy()  # (n, 7, 7)
    strip = windows.transpose(1, 0, 2).reshape(KERNEL_SIZE, -1)  # windows side by side
    kernel = package_kernel2d()
    mu = scipy.signal.convolve2d(strip, kernel, "valid")[0, ::KERNEL_SIZE]
    ex2 = scipy.signal.convolve2d(strip**2, kernel, "valid")[0, ::KERNEL_SIZE]
    center = windows[:, half, half]
    return (center - mu) / (np.sqrt(np.abs(mu**2 - ex2)) + MSCN_C)


def _box_sums(a: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sums of `a` (..., H, W) over every height x width box, (..., H - height + 1, W - width + 1), exact ints."""
    s = torch.nn.functional.pad(a.to(torch.int32).cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    return s[..., height:, width:] - s[..., :-height, width:] - s[..., height:, :-width] + s[..., :-height, :-width]


def flat_window_map(gray: torch.Tensor, size: int = KERNEL_SIZE) -> torch.Tensor:
    """(..., H, W) bool: pixels whose size x size window lies inside the image and holds a single value."""
    h, w = gray.shape[-2:]
    mask = torch.zeros(gray.shape, dtype=torch.bool, device=gray.device)
    if h < size or w < size:
        return mask
    changes_h = _box_sums(gray[..., :, 1:] != gray[..., :, :-1], size, size - 1)
    changes_v = _box_sums(gray[..., 1:, :] != gray[..., :-1, :], size - 1, size)
    half = (size - 1) // 2
    mask[..., half : h - size + 1 + half, half : w - size + 1 + half] = (changes_h == 0) & (changes_v == 0)
    return mask


def package_flat_mscn(values: np.ndarray) -> np.ndarray:
    """The package's MSCN in a flat 7x7 window inside the image, for each value c: it depends on c only, so
    `package_mscn_at` runs once per distinct value."""
    unique, inverse = np.unique(values, return_inverse=True)
    strip = np.repeat(unique[None, :], KERNEL_SIZE, axis=1).repeat(KERNEL_SIZE, axis=0)  # 7x7 blocks side by side
    kernel = package_kernel2d()
    mu = scipy.signal.convolve2d(strip, kernel, "valid")[0, ::KERNEL_SIZE]
    ex2 = scipy.signal.convolve2d(strip**2, kernel, "valid")[0, ::KERNEL_SIZE]
    return ((unique - mu) / (np.sqrt(np.abs(mu**2 - ex2)) + MSCN_C))[inverse]


def flat_windows_at(gray: torch.Tensor, where: tuple[torch.Tensor, ...], size: int = KERNEL_SIZE) -> torch.Tensor:
    """`flat_window_map(gray)[where]`, computed from the windows of the pixels `where` only (few pixels) or
    from the whole map (many pixels), whichever is cheaper."""
    n = where[0].numel()
    h, w = gray.shape[-2:]
    if n * size * size >= gray.numel() // 4 or h < size or w < size:
        return flat_window_map(gray, size)[where]
    half = (size - 1) // 2
    rows, cols = where[-2], where[-1]
    inside = (rows >= half) & (rows < h - half) & (cols >= half) & (cols < w - half)
    flat = torch.zeros(n, dtype=torch.bool, device=gray.device)
    if bool(inside.any()):
        idx = tuple(i[inside] for i in where)
        lead = gray.reshape(-1, h, w)
        plane = torch.zeros(idx[0].shape, dtype=torch.long, device=gray.device)  # index into the flattened lead
        for dim, index in enumerate(idx[:-2]):
            plane += index * math.prod(gray.shape[dim + 1 : -2])
        offsets = torch.arange(-half, half + 1, device=gray.device)
        rows, cols = (idx[-2][:, None] + offsets)[:, :, None], (idx[-1][:, None] + offsets)[:, None, :]
        windows = lead[plane[:, None, None], rows, cols]  # (n, size, size)
        flat[inside] = (windows == windows[:, half : half + 1, half : half + 1]).flatten(1).all(1)
    return flat


def match_package_where_mscn_vanishes(
    m: torch.Tensor, gray64: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, diff: torch.Tensor | None = None
) -> torch.Tensor:
    """MSCN map `m` with the package's own values where x - mu vanishes (value only; gradient unchanged).

    Why: there the package's MSCN is rounding noise of either sign, and the AGGD fit splits coefficients by
    sign, so that noise moves its features: by 0.1 to 1 BRISQUE points on photos with flat areas or on
    JPEG-20 images (flat and ramp-like blocks). Our separable filter rounds differently, so at those pixels
    we evaluate the package's arithmetic itself: once per distinct value for flat windows
    (`package_flat_mscn`), per window for the others (`package_mscn_at`). `diff` = x - mu if known. A
    contiguous `m` that needs no gradient is updated in place (and returned).
    """
    with torch.no_grad():
        linear = _vanishing_linear(gray64, mu, sigma, diff)
        if linear.numel() == 0:
            return m
        suspect = torch.unravel_index(linear, gray64.shape)
        flat = flat_windows_at(gray64, suspect)
        target = torch.empty(flat.shape, dtype=torch.float64)
        if bool(flat.any()):
            values = gray64.reshape(-1).take(linear[flat]).cpu().numpy()
            target[flat.cpu()] = torch.from_numpy(package_flat_mscn(values))
        if not bool(flat.all()):
            target[~flat.cpu()] = torch.from_numpy(package_mscn_at(gray64, tuple(i[~flat] for i in suspect)))
        target = target.to(device=m.device, dtype=m.dtype)
    if not m.requires_grad and m.is_contiguous():
        current = m.reshape(-1).take(linear)
        return m.reshape(-1).put_(linear, current + (target - current)).view(m.shape)
    return m.index_put(suspect, m[suspect] + (target - m.detach()[suspect]))


def scale_moments(gray64: torch.Tensor, dtype: torch.dtype, match_package: bool = True) -> nss.AGGDMoments:
    """AGGD moments (each (N, 5)) of the MSCN map and its 4 pair products at one scale of the float64 gray image.

    The MSCN map is always computed in float64 (in float32, K * x^2 - mu^2 cancels badly in smooth regions,
    about 0.1 BRISQUE points); the pair products and the moments in `dtype`.
    """
    kernel = nss.gaussian_kernel1d(KERNEL_SIZE, KERNEL_SIGMA, dtype=torch.float64, device=gray64.device)
    mu, sigma = nss.local_mean_and_deviation(gray64, kernel, padding="zeros")
    diff = gray64 - mu
    m = diff / (sigma + MSCN_C)
    if match_package:
        m = match_package_where_mscn_vanishes(m, gray64, mu, sigma, diff)
    m = m.to(dtype)
    return nss.stack_moments([nss.aggd_moments(t) for t in (m, *nss.pair_products(m, boundary="crop"))])


def features_from_moments(moments: nss.AGGDMoments) -> torch.Tensor:
    """BRISQUE features (N, 18 * S) from stacked moments (each (N, S, 5): S scales x [MSCN + 4 pair products]).

    Per scale, the package's order: [alpha_m, (sl_m^2 + sr_m^2) / 2] then, for the horizontal, vertical, main
    and secondary diagonal pair products, [alpha, mean, sl^2, sr^2].
    """
    fit = nss.aggd_fit_from_moments(moments)
    n, scales = fit.alpha.shape[:2]
    mscn_part = torch.stack([fit.alpha[..., 0], (fit.sigma_l_sq[..., 0] + fit.sigma_r_sq[..., 0]) / 2], dim=-1)
    pair_part = torch.stack([fit.alpha[..., 1:], fit.mean[..., 1:], fit.sigma_l_sq[..., 1:], fit.sigma_r_sq[..., 1:]], dim=-1)
    return torch.cat([mscn_part, pair_part.reshape(n, scales, 16)], dim=-1).reshape(n, 18 * scales)


def _file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread inside the block (small ops: no OpenMP hand-offs, which spin and
    stall when the cores are busy), then restore the caller's count."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _match_package_numpy(m: np.ndarray, gray: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                         diff: np.ndarray) -> np.ndarray:
    """`match_package_where_mscn_vanishes` on the float64 numpy maps of one image (m updated in place): the
    same pixels, values and update, with the search and the flat-window test compiled."""
    from evaluator.biqa.brisque_fast import vanishing_pixels

    linear, flat = vanishing_pixels(gray, mu, sigma, diff, nss.TINY)
    if linear.size == 0:
        return m
    target = np.empty(linear.size)
    if flat.any():
        target[flat] = package_flat_mscn(gray.reshape(-1)[linear[flat]])
    if not flat.all():
        rows, cols = np.unravel_index(linear[~flat], gray.shape)
        target[~flat] = package_mscn_at(torch.from_numpy(gray), (torch.from_numpy(rows), torch.from_numpy(cols)))
    flat_m = m.reshape(-1)
    current = flat_m[linear]
    flat_m[linear] = current + (target - current)
    return m


class Brisque(BIQAModel):
    """BRISQUE with the `brisque` package's SVR. raw_score = 100 - BRISQUE; forward = clip to [0, 100].

    `dtype`: dtype of the pair products and AGGD moments (the MSCN map, feature scaling and SVR are always
    float64); float32 stays within about 1e-4 BRISQUE points of float64. `match_package`: reproduce the
    package's rounding where the MSCN vanishes (flat or ramp-like windows; see
    `match_package_where_mscn_vanishes`); off, it is about twice as fast and up to ~1 point off on JPEG-20 or
    flat images. `chunk_size`: images processed together (small chunks keep temporaries in cache).
    """

    def __init__(
        self,
        dtype: torch.dtype = torch.float32,
        model_dir: str | Path | None = None,
        match_package: bool = True,
        chunk_size: int = 1,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Brisque: dtype must be torch.float32 or torch.float64, got {dtype}")
        directory = Path(model_dir) if model_dir is not None else brisque_model_dir()
        svm_path, norm_path = directory / "svm.txt", directory / "normalize.pickle"
        svr = load_svr(svm_path)
        if svr.support_vectors.shape[1] != N_FEATURES:
            raise BrisqueModelError(f"{svm_path}: support vectors must have {N_FEATURES} features")
        lo, hi = load_feature_range(norm_path)
        self.compute_dtype = dtype
        self.match_package = match_package
        if chunk_size < 1:
            raise ValueError(f"Brisque: chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        if threads is not None and threads < 1:
            raise ValueError(f"Brisque: threads must be >= 1 (or None: torch's thread count), got {threads}")
        self.threads = threads
        self.register_buffer("support_vectors", svr.support_vectors)
        self.register_buffer("dual_coef", svr.dual_coef)
        self.register_buffer("rho", torch.tensor(svr.rho, dtype=torch.float64))
        self.register_buffer("gamma", torch.tensor(svr.gamma, dtype=torch.float64))
        self.register_buffer("feature_min", lo)
        self.register_buffer("feature_max", hi)
        self.info = spec("brisque").info(weights_sha256=_file_digest(svm_path, norm_path))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 36 BRISQUE features (N, 36) of RGB `x` (N, 3, H, W) in [0, 1]: full scale then half scale."""
        self.check_input(x)
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"BRISQUE needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {tuple(x.shape)}")
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self._features_no_graph(x)
        per_chunk = []
        for chunk in x.split(self.chunk_size):  # small chunks keep temporaries in cache
            x64 = to_float64_on_8bit_grid(chunk)
            gray = package_gray(x64) if self.match_package else rgb_to_gray(x64)
            full = scale_moments(gray, self.compute_dtype, self.match_package)
            half = scale_moments(half_scale(gray), self.compute_dtype, self.match_package)
            per_chunk.append(nss.stack_moments([full, half], dim=1))  # (n, 2, 5)
        moments = nss.AGGDMoments(
            *(torch.cat([getattr(m, f) for m in per_chunk]) for f in nss.AGGDMoments.__dataclass_fields__)
        )
        return features_from_moments(moments).to(torch.float64)

    def _features_no_graph(self, x: torch.Tensor) -> torch.Tensor:
        """`features` without a graph: the compiled per-image kernels of `evaluator.biqa.brisque_fast` (float64
        throughout, one image per thread: the values do not depend on `self.threads`, the batch or torch's
        thread count)."""
        from evaluator.biqa import brisque_fast

        images = x.detach().cpu()
        if images.dtype not in (torch.float32, torch.float64):
            images = images.to(torch.float64)
        taps = nss.gaussian_kernel1d(KERNEL_SIZE, KERNEL_SIGMA, dtype=torch.float64).numpy()
        half_taps = np.array(HALF_SCALE_TAPS, dtype=np.float64)
        match = _match_package_numpy if self.match_package else None
        threads = self.threads if self.threads is not None else torch.get_num_threads()
        with single_torch_thread():  # the package-rounding fix-ups run small torch ops on each image's thread
            moments = torch.from_numpy(brisque_fast.batch_moments(
                images.contiguous().numpy(), GRAY_WEIGHTS, taps, half_taps, MSCN_C, nss.TINY, match, threads,
            ))  # (N, 2 scales, 5 maps, 4 moments)
        stacked = nss.AGGDMoments(*(moments[..., k] for k in range(4)))
        with single_torch_thread():
            return features_from_moments(stacked).to(device=x.device, dtype=torch.float64)

    def svr(self, features: torch.Tensor) -> torch.Tensor:
        """BRISQUE (N,) (lower = better) of raw features (N, 36): min-max scaling to [-1, 1], then the RBF SVR."""
        dtype = self.support_vectors.dtype
        f = features.to(dtype)
        scaled = -1 + 2.0 / (self.feature_max - self.feature_min) * (f - self.feature_min)
        sq_dist = ((scaled[:, None, :] - self.support_vectors[None, :, :]) ** 2).sum(-1)
        if torch.is_grad_enabled() and features.requires_grad:
            return torch.exp(-self.gamma * sq_dist) @ self.dual_coef - self.rho
        with single_torch_thread():  # small: one thread is faster, and the sums do not depend on a thread count
            return (torch.exp(-self.gamma * sq_dist) * self.dual_coef).sum(-1) - self.rho

    def brisque(self, x: torch.Tensor) -> torch.Tensor:
        """The BRISQUE score (N,) of the package (lower = better, roughly 0..100), float64."""
        return self.svr(self.features(x))

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        """100 - BRISQUE, unclipped (higher = better), in x's dtype; differentiable with respect to x."""
        return (100.0 - self.brisque(x)).to(x.dtype)
