"""95% intervals of the best-worst score for the jury's crossed design (every juror judges the same images).

Notation for one run r (the run index is dropped): d_ji in {-1, 0, 1} is juror j's score for the run on image i
(1 = picked most appealing, -1 = least), over the ballots that showed the run; D_j, A_j are juror j's sum of d
and number of such ballots, D_i, A_i the same per image, D, A the totals, so bws = D / A. J = jurors with
A_j > 0, I = images with A_i > 0.

`--interval jurors` (default) answers: what would another jury from the same population of jurors say about
*these* images? Images are fixed, jurors are random; the estimand is the population mean of the juror-level
score over these images. Jurors are independent draws, so bws is a ratio estimator over J i.i.d. jurors and
its linearised variance is (Cochran 1977, Sampling Techniques, eq. 6.9, with the n/(n-1) correction)

    V = J / (J - 1) * sum_j (D_j - bws A_j)^2 / A^2,      interval: bws +- t_{J-1, 1-alpha/2} sqrt(V).

When every juror saw the run on the same number of images this is exactly the one-sample Student t interval on
the juror-level scores s_j = D_j / A_j: mean(s) +- t_{J-1} sd(s) / sqrt(J). The t quantile is the small-sample
correction (t_{6, 0.975} = 2.45 at the 2020 jury's 7 jurors, against 1.96): a percentile bootstrap over 7
jurors is too narrow. Resampling each juror's ballots as well (the former two-stage bootstrap) adds the
image-to-image spread, which does not belong to this question, and made the intervals too wide.

`--interval jurors+images` answers: what would another jury, judging another set of images from the same
population, say? Jurors and images are both random (two-way crossed random effects,
d_ji = mu + a_j + b_i + e_ji); the estimand is mu. The variance of bws is sigma_a^2 / J + sigma_b^2 / I +
sigma_e^2 / (J I), estimated by the method of moments from the two-way ANOVA (Searle, Casella & McCulloch 1992,
Variance Components, sec. 4.7), with n_J = A / J ballots per juror and n_I = A / I per image:

    SS_J = sum_j (D_j - bws A_j)^2 / n_J,  SS_I = sum_i (D_i - bws A_i)^2 / n_I,
    SS_E = sum_ji (d_ji - bws)^2 - SS_J - SS_I,   sum_ji (d_ji - bws)^2 = (most + least) - bws D,
    MS_J = SS_J / (J - 1),  MS_I = SS_I / (I - 1),  MS_E = SS_E / ((J - 1)(I - 1)),
    sigma_a^2 = max(0, (MS_J - MS_E) / n_J),  sigma_b^2 = max(0, (MS_I - MS_E) / n_I),  sigma_e^2 = MS_E,
    V = sigma_a^2 / J + sigma_b^2 / I + sigma_e^2 / (J I)   (= (MS_J + MS_I - MS_E) / (J I) when complete),

interval bws +- t_nu sqrt(V), nu by Satterthwaite (1946) for V = sum_k c_k MS_k: nu = V^2 / sum_k (c_k MS_k)^2
/ df_k. The formulas are exact for a complete design (every juror judged every image and the run is on every
image) and the usual approximation otherwise.

Near the bounds both variances collapse: when every juror gives a run the same score (always picked, never
picked, or always left in the middle) every residual above is 0 and a Wald interval bws +- t sqrt(V) has zero
width, and close to the bounds it is far too narrow (a run picked on 97% of ballots is often seen picked on
all of them). Two Wilson/Agresti-Coull-type adjustments (Wilson 1927; Agresti & Coull 1998) keep both
intervals honest there, with z = z_{1-alpha/2} and kappa = z^2 pseudo-ballots:

  1. Variance floor (Agresti-Coull): kappa pseudo-ballots of variance 1 (Agresti-Coull's z^2 / 2 pseudo-
     ballots at +1 and z^2 / 2 at -1). For jurors+images they are pooled with the ballots' own variance
     SS_T = sum_ji (d_ji - bws)^2, since the two-way V is at least the variance of A independent ballots when
     the variance components are >= 0; for jurors they alone make the floor, the variance of bws when only
     the pseudo-ballots vary:

         V_0 = kappa / ((A + kappa) A)                 (jurors),
         V_0 = (SS_T + kappa) / ((A - 1 + kappa) A)    (jurors+images),

     and the squared half-width is h^2 = max(t^2 V, z^2 V_0) (t the interval's quantile above). (The jurors'
     floor could pool the within-image variance the same way, a lower bound as well; but as the t_{J-1}
     quantile already pays for the uncertainty of V, that made the jurors interval cover more than the tests
     allow near the bounds at 7 jurors.)
  2. Score (Wilson-type) interval. A score in [-1, 1] with mean theta has variance at most 1 - theta^2, and
     near a bound its variance shrinks with the distance to it (a run picked on 97% of ballots varies about
     twice as much as one picked on 98.5%). Taking the variance at theta as h^2 (1 - theta^2) / m, with
     m = max(1 - bws^2, 1 - (A / (A + kappa))^2) (1 - bws^2, but never below its value at Agresti-Coull's shrunk
     all-agree score A / (A + kappa)), the interval is, as Wilson's, the set of theta with
     (bws - theta)^2 <= c (1 - theta^2), c = h^2 / m:

         low, high = (bws -+ sqrt(c (1 + c - bws^2))) / (1 + c),

     inside [-1, 1] by construction, never of zero width, longer on the side away from the nearer bound, and
     bws +- h up to terms in c for a run away from the bounds.

For example 7 jurors x 20 images all picking a run as "most" gives (0.973, 1) (Wilson's interval for a
proportion seen in 140 of 140 trials starts at 140 / (140 + z^2) = 0.973), and all leaving it in the middle
(-0.027, 0.027). NaN when the variance cannot be estimated (fewer than 2 jurors, or for jurors+images
fewer than 2 images, saw the run). `tests/test_jury_intervals.py` checks the coverage of both by simulation at
7 and 20 jurors, in the interior and near the bounds, and of the default interval with missing ballots.
Not covered: a minority of jurors (for jurors+images, also of images) who, near a bound, score a run very
differently from the rest (most jurors always pick it, a few rarely do). A jury that happens to hold none of
them cannot show them, and there the intervals cover less than 95%.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from jury_app.ranking.ranking import JuryCounts

INTERVALS = ("jurors", "jurors+images")
DEFAULT_INTERVAL = "jurors"

#: the question each interval answers, as the CLI and the organizer page say it.
QUESTION = {
    "jurors": "what would another jury from the same population of jurors say about these images? "
              "(jurors random, images fixed)",
    "jurors+images": "what would another jury say about other images from the same population? "
                     "(jurors and images random)",
}


def _nan(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, np.nan), np.full(n, np.nan)


def _bws(counts: JuryCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D_jr juror sums of d, A_r, bws_r) with bws NaN where A_r = 0."""
    d_j = (counts.juror_most - counts.juror_least).astype(np.float64)
    a = counts.juror_appear.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bws = np.where(a > 0, d_j.sum(axis=0) / np.where(a > 0, a, 1), np.nan)
    return d_j, a, bws


def _ballot_ss(counts: JuryCounts, bws: np.ndarray) -> np.ndarray:
    """SS_T = sum_ji (d_ji - bws)^2 = (most + least) - bws D, per run (d^2 = most + least)."""
    d = (counts.juror_most - counts.juror_least).sum(axis=0)
    return np.maximum((counts.juror_most + counts.juror_least).sum(axis=0) - bws * d, 0.0)


def _score_interval(bws: np.ndarray, a: np.ndarray, half_sq: np.ndarray, kappa: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson-type interval {theta: (bws - theta)^2 <= c (1 - theta^2)} (module docstring, step 2)."""
    c = half_sq / np.maximum(1 - bws ** 2, 1 - (a / (a + kappa)) ** 2)
    r = np.sqrt(c * np.maximum(1 + c - bws ** 2, 0.0))
    return np.clip((bws - r) / (1 + c), -1, 1), np.clip((bws + r) / (1 + c), -1, 1)


def juror_interval_arrays(counts: JuryCounts, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per run of the jurors-random interval (module docstring: first formula, floor and score)."""
    n_r = len(counts.runs)
    if not len(counts.jurors):
        return _nan(n_r)
    d_j, a, bws = _bws(counts)
    a_j = counts.juror_appear.astype(np.float64)
    n_j = (a_j > 0).sum(axis=0)
    resid = np.where(a_j > 0, d_j - bws * a_j, 0.0)
    z = norm.ppf(0.5 + level / 2)
    kappa = z ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        var = n_j / (n_j - 1) * (resid ** 2).sum(axis=0) / a ** 2
        t = student_t.ppf(0.5 + level / 2, np.maximum(n_j - 1, 1))
        floor = kappa / ((a + kappa) * a)
        low, high = _score_interval(bws, a, np.maximum(t ** 2 * var, z ** 2 * floor), kappa)
    ok = (n_j >= 2) & (a > 0)
    return np.where(ok, low, np.nan), np.where(ok, high, np.nan)


def two_way_interval_arrays(counts: JuryCounts, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per run of the jurors-and-images-random interval (module docstring: second formula, floor
    and score)."""
    n_r = len(counts.runs)
    if not len(counts.jurors):
        return _nan(n_r)
    d_j, a, bws = _bws(counts)
    a_j = counts.juror_appear.astype(np.float64)
    a_i = counts.image_appear.astype(np.float64)
    d_i = (counts.image_most - counts.image_least).astype(np.float64)
    n_jur, n_img = (a_j > 0).sum(axis=0).astype(np.float64), (a_i > 0).sum(axis=0).astype(np.float64)
    total_sq = _ballot_ss(counts, bws)
    z = norm.ppf(0.5 + level / 2)
    kappa = z ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        per_juror, per_image = a / n_jur, a / n_img
        ss_j = (np.where(a_j > 0, d_j - bws * a_j, 0.0) ** 2).sum(axis=0) / per_juror
        ss_i = (np.where(a_i > 0, d_i - bws * a_i, 0.0) ** 2).sum(axis=0) / per_image
        df_j, df_i = n_jur - 1, n_img - 1
        df_e = df_j * df_i
        ms_j, ms_i = ss_j / df_j, ss_i / df_i
        ms_e = np.maximum(total_sq - ss_j - ss_i, 0.0) / df_e
        use_j, use_i = ms_j > ms_e, ms_i > ms_e  # the variance component is positive
        c_j = np.where(use_j, 1 / (per_juror * n_jur), 0.0)
        c_i = np.where(use_i, 1 / (per_image * n_img), 0.0)
        c_e = 1 / (n_jur * n_img) - c_j - c_i
        var = c_j * ms_j + c_i * ms_i + c_e * ms_e
        terms = (c_j * ms_j) ** 2 / df_j + (c_i * ms_i) ** 2 / df_i + (c_e * ms_e) ** 2 / df_e
        nu = np.where(terms > 0, var ** 2 / np.where(terms > 0, terms, 1), np.inf)
        t = student_t.ppf(0.5 + level / 2, np.maximum(nu, 1))
        floor = (total_sq + kappa) / ((a - 1 + kappa) * a)
        low, high = _score_interval(bws, a, np.maximum(t ** 2 * np.maximum(var, 0), z ** 2 * floor), kappa)
    ok = (n_jur >= 2) & (n_img >= 2) & (a > 0)
    return np.where(ok, low, np.nan), np.where(ok, high, np.nan)


def bws_intervals(counts: JuryCounts, method: str = DEFAULT_INTERVAL, *, level: float = 0.95
                  ) -> dict[str, tuple[float, float]]:
    """run -> (low, high) interval of bws by `method` ("jurors" or "jurors+images"); (nan, nan) if undefined."""
    if method not in INTERVALS:
        raise ValueError(f"unknown interval {method!r}; choose one of {', '.join(INTERVALS)}")
    fn = juror_interval_arrays if method == "jurors" else two_way_interval_arrays
    low, high = fn(counts, level)
    return {r: (float(low[k]), float(high[k])) for k, r in enumerate(counts.runs)}
