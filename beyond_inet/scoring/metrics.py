"""Evaluation metrics as pure functions on numpy arrays.

Only the ImageNet-X annotation loader touches files (cached). Conventions reproduced here:

* calibration: torchmetrics ``MulticlassCalibrationError`` binning, including its extra bin
  for confidence exactly 1.0 (see :func:`calibration_bins`);
* ImageNet-X: the ``imagenet_x`` package's ``compute_factor_accuracies`` / ``error_ratio``;
* shape bias: bethgelab/model-vs-human ``ShapeBias`` (Geirhos et al., ICLR 2019).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from beyond_inet.reference import CUE_CONFLICT_CATEGORIES as CATEGORIES
from beyond_inet.reference import IMAGENET_X_FACTORS, imagenet_x_annotations
from beyond_inet.settings import DEFAULT_BOOTSTRAP

NAN = math.nan

# --------------------------------------------------------------------------- accuracy & losses


def topk_hits(topk_idx: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: whether each row's label is among the first ``k`` columns of ``topk_idx``
    (int [N, K >= k], columns sorted by descending probability; ``labels`` [N])."""
    topk, labels = np.asarray(topk_idx), np.asarray(labels)
    if topk.ndim != 2 or labels.shape != (topk.shape[0],):
        raise ValueError(f"expected topk_idx [N, K], labels [N]; got {topk.shape}, {labels.shape}")
    if not 1 <= k <= topk.shape[1]:
        raise ValueError(f"k must be in [1, {topk.shape[1]}], got {k}")
    return np.any(topk[:, :k] == labels[:, None], axis=1)


def _last_axis_mean(values: np.ndarray) -> Any:
    """Mean over the last axis (images); float for 1-D input, NaN when there is no image.
    Leading axes are independent sets (e.g. bootstrap resamples)."""
    if values.shape[-1] == 0:
        return NAN if values.ndim == 1 else np.full(values.shape[:-1], NAN)
    out = values.mean(axis=-1)
    return float(out) if values.ndim == 1 else out


def mean(values: np.ndarray) -> Any:
    """Mean over images (the last axis) of per-image values, e.g. correctness -> accuracy;
    NaN when empty. Leading axes broadcast (bootstrap resamples)."""
    return _last_axis_mean(np.asarray(values, dtype=np.float64))


def negative_log_likelihood(p_true: np.ndarray, eps: float = 1e-12) -> Any:
    """Mean of ``-log(max(p_true, eps))`` over images (natural log); NaN when empty.
    Leading axes broadcast."""
    p = np.asarray(p_true, dtype=np.float64)
    return _last_axis_mean(-np.log(np.clip(p, eps, None)))


def brier_per_image(probs: Any, labels: Any) -> Any:
    """float64 [N]: ``sum_c (probs[n, c] - onehot(labels[n])_c) ** 2``.

    numpy in, numpy out (computed in chunks); a torch tensor in gives a float64 tensor on its
    device without a host sync (the engine scores batches on the GPU with it).
    """
    import torch

    as_numpy = not isinstance(probs, torch.Tensor)
    p, y = torch.as_tensor(probs), torch.as_tensor(labels)
    if p.ndim != 2 or tuple(y.shape) != (p.shape[0],):
        raise ValueError(
            f"expected probs [N, C] and labels [N], got {tuple(p.shape)}, {tuple(y.shape)}"
        )
    y = y.to(device=p.device, dtype=torch.long)[:, None]
    step = max(1, 2**22 // max(p.shape[1], 1))
    parts = []
    for start in range(0, p.shape[0], step):
        diff = p[start : start + step].to(torch.float64, copy=True)
        diff.scatter_add_(1, y[start : start + step], torch.full_like(diff[:, :1], -1.0))
        parts.append((diff * diff).sum(dim=1))
    out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=p.device)
    return out.numpy() if as_numpy else out


def brier_score(brier_values: np.ndarray) -> Any:
    """Mean of per-image Brier values (see :func:`brier_per_image`); NaN when empty.
    Leading axes broadcast."""
    return _last_axis_mean(np.asarray(brier_values, dtype=np.float64))


# --------------------------------------------------------------------------- calibration


@functools.lru_cache(maxsize=64)
def bin_edges(n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` calibration bin edges, read-only float32, built exactly as
    torchmetrics does (``torch.linspace(0, 1, n_bins + 1)``)."""
    import torch

    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float32).numpy().copy()
    edges.setflags(write=False)
    return edges


def _calibration_inputs(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (confidence, correct) as float64 1-D arrays of equal length."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    corr = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct differ in size: {conf.size} vs {corr.size}")
    if not np.all((conf >= 0.0) & (conf <= 1.0)):
        raise ValueError("confidence must lie in [0, 1] (and not be NaN)")
    return conf, corr


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The calibration bin of each confidence in ``[0, 1]``, as torchmetrics assigns it
    (``torch.bucketize(conf.float(), edges, right=True) - 1`` over :func:`bin_edges`): bin
    ``k < n_bins`` holds ``edges[k] <= float32(conf) < edges[k + 1]``, a confidence of 1.0
    (after the float32 cast) the extra bin ``n_bins``. The one bin assignment of every
    calibration number: ECE / MCE, their bootstrap designs and the reliability table."""
    conf = np.asarray(confidence)
    return np.searchsorted(bin_edges(n_bins), conf.astype(np.float32), side="right") - 1


#: The former private names of :func:`bin_edges` and :func:`bin_index`
#: (``tests/test_intervals.py`` still reads them).


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin reliability table (the reliability diagram's bins) with the bin assignment of
    ECE / MCE (:func:`bin_index`); ``n_bins + 1`` rows.

    Bin k < n_bins holds ``edges[k] <= float32(conf) < edges[k+1]`` with float32 edges from
    ``torch.linspace(0, 1, n_bins + 1)``. Like torchmetrics (``bucketize(right=True) - 1``),
    a confidence equal to 1.0 after the float32 cast falls into an EXTRA bin ``n_bins``
    (``bin_lower == bin_upper == 1.0``), which counts in ECE/MCE. Columns: bin, bin_lower,
    bin_upper, count, n_correct, accuracy, mean_confidence (NaN when empty), gap = accuracy -
    mean_conf. ECE is the count-weighted mean of ``|gap|``, MCE its max over non-empty bins.
    """
    conf, corr = _calibration_inputs(confidence, correct, n_bins)
    idx, size = bin_index(conf, n_bins), n_bins + 1
    count = np.bincount(idx, minlength=size)
    hits = np.bincount(idx, weights=corr, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits / count
        mean_conf = np.bincount(idx, weights=conf, minlength=size) / count
    edges = bin_edges(n_bins).astype(np.float64)
    return pd.DataFrame(
        {
            "bin": np.arange(size),
            "bin_lower": edges,
            "bin_upper": np.append(edges[1:], 1.0),
            "count": count.astype(np.int64),
            "n_correct": np.rint(hits).astype(np.int64),
            "accuracy": accuracy,
            "mean_confidence": mean_conf,
            "gap": accuracy - mean_conf,
        }
    )


def calibration_errors(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """(ECE, MCE) with :func:`calibration_bins`' binning, for ``[..., N]`` inputs: each
    leading index is an independent set of N images (bootstrap resamples are scored in one
    call). ECE = count-weighted mean of ``|accuracy - mean confidence|`` over bins, MCE =
    its max over non-empty bins (torchmetrics ``norm='l1'`` / ``'max'``); NaN when N == 0."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    if conf.shape != corr.shape:
        raise ValueError(f"confidence and correct differ in shape: {conf.shape} vs {corr.shape}")
    lead, n, k = conf.shape[:-1], conf.shape[-1], n_bins + 1
    if n == 0:
        return np.full(lead, NAN), np.full(lead, NAN)
    if not np.all((conf >= 0.0) & (conf <= 1.0)):
        raise ValueError("confidence must lie in [0, 1] (and not be NaN)")
    b = int(np.prod(lead)) if lead else 1
    offsets = (bin_index(conf.reshape(b, n), n_bins) + (np.arange(b) * k)[:, None]).ravel()
    count = np.bincount(offsets, minlength=b * k).reshape(b, k)
    hits = np.bincount(offsets, weights=corr.ravel(), minlength=b * k).reshape(b, k)
    total_conf = np.bincount(offsets, weights=conf.ravel(), minlength=b * k).reshape(b, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(hits / count - total_conf / count)
    ece = np.nansum((count / n) * gap, axis=1)
    mce = np.where(count > 0, gap, -np.inf).max(axis=1)
    return ece.reshape(lead), mce.reshape(lead)


def calibration_design(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """float64 [N, 2 (n_bins + 1)]: per image, its bin indicator (:func:`calibration_bins`'
    binning) in the first ``n_bins + 1`` columns and ``correct - confidence`` in its bin's
    column of the second half. Column sums over any weighting of the images (a bootstrap
    resample) give each bin's count and ``hits - total confidence``:
    :func:`calibration_errors_from_sums` turns them into ECE and MCE."""
    conf, corr = _calibration_inputs(confidence, correct, n_bins)
    k, rows = n_bins + 1, np.arange(len(conf))
    design = np.zeros((len(conf), 2 * k))
    idx = bin_index(conf, n_bins)
    design[rows, idx] = 1.0
    design[rows, k + idx] = corr - conf
    return design


def calibration_errors_from_sums(sums: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ECE, MCE) [...] from :func:`calibration_design` column sums [..., 2 (n_bins + 1)] and
    the image count ``n`` [...]: ``ECE = sum_k |hits_k - conf_k| / n`` (the count-weighted
    mean gap of :func:`calibration_errors`), ``MCE = max_k |hits_k - conf_k| / count_k`` over
    non-empty bins; NaN without images."""
    k = sums.shape[-1] // 2
    count, gap = sums[..., :k], np.abs(sums[..., k:])
    with np.errstate(invalid="ignore", divide="ignore"):
        ece = gap.sum(axis=-1) / n
        per_bin = np.where(count > 0.5, gap / np.where(count > 0.5, count, 1.0), -np.inf)
    mce = per_bin.max(axis=-1)
    return ece, np.where(np.isfinite(mce), mce, NAN)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> Any:
    """ECE (see :func:`calibration_errors`): a float for 1-D input; NaN if empty."""
    ece = calibration_errors(confidence, correct, n_bins)[0]
    return float(ece) if ece.ndim == 0 else ece


def max_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> Any:
    """MCE (see :func:`calibration_errors`): a float for 1-D input; NaN if empty."""
    mce = calibration_errors(confidence, correct, n_bins)[1]
    return float(mce) if mce.ndim == 0 else mce


def calibration_moments_design(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> np.ndarray:
    """float64 [N, 3 (n_bins + 1)]: per image, its bin indicator (:func:`calibration_bins`'
    binning), ``d = correct - confidence`` and ``d**2``, each in its bin's column of the
    first, second and third block. Column sums (over the images, or any resample of them)
    are each bin's count, sum of d and sum of d**2: the inputs of
    :func:`squared_calibration_error_from_sums`."""
    conf, corr = _calibration_inputs(confidence, correct, n_bins)
    k, rows = n_bins + 1, np.arange(len(conf))
    idx, d = bin_index(conf, n_bins), corr - conf
    design = np.zeros((len(conf), 3 * k))
    design[rows, idx] = 1.0
    design[rows, k + idx] = d
    design[rows, 2 * k + idx] = d * d
    return design


def squared_calibration_error_from_sums(sums: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The debiased squared calibration error [...] (Kumar, Liang & Ma 2019, "Verified
    uncertainty calibration") from :func:`calibration_moments_design` column sums [..., 3k]
    and the image count ``n``: ``sum_k (n_k / n) (g_k**2 - s_k**2 / n_k)`` with ``g_k`` the
    bin's mean gap ``accuracy - confidence`` and ``s_k**2`` the unbiased variance of its
    per-image gaps — unbiased for ``sum_k P(bin k) gap_k**2`` (so it can be below 0 for a
    calibrated model). Bins of fewer than two images add nothing; NaN without images."""
    k = sums.shape[-1] // 3
    count, total, squares = sums[..., :k], sums[..., k : 2 * k], sums[..., 2 * k :]
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(count > 1.5, count, 2.0)
        variance = (squares - total**2 / safe) / (safe - 1.0)
        term = np.where(count > 1.5, total**2 / safe - variance, 0.0)
        return term.sum(axis=-1) / n


#: The fewest images the debiased RMS calibration error gives an interval for.
MIN_INTERVAL_IMAGES = 30


@dataclass(frozen=True)
class Interval:
    """A point estimate with its ``1 - alpha`` interval (NaN bounds: none)."""

    value: float
    low: float = NAN
    high: float = NAN


def rms_calibration_error(
    confidence: np.ndarray,
    correct: np.ndarray,
    n_bins: int = 15,
    n_null: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    alpha: float = 0.05,
) -> Interval:
    """Debiased RMS calibration error (15 bins, :func:`calibration_bins`' binning) with an
    interval for the population value ``sqrt(sum_k P(bin k) gap_k**2)``.

    The estimate is ``sqrt(max(S, 0))`` with ``S`` the unbiased squared error of
    :func:`squared_calibration_error_from_sums`. The interval is built on ``S`` and mapped
    by the same square root: ``S +- z se``, ``se`` the jackknife standard error and the
    spread of ``S`` under perfect calibration added in quadrature (the jackknife alone misses
    the spread near 0, where the estimator is degenerate). ``S`` under perfect calibration is
    drawn with every label redrawn as ``Bernoulli(confidence)`` (consistency resampling,
    Broecker & Smith 2007; ``n_null`` draws, seeded). 0 is inside the interval exactly when
    a one-sided level-``alpha`` test of perfect calibration (``S`` against that null) does
    not reject; when it rejects, the low end is ``S - z se`` but above 0.
    ``n_null = 0``, or fewer than :data:`MIN_INTERVAL_IMAGES` images, gives the estimate
    alone (a jackknife over a handful of images says nothing)."""
    conf, corr = _calibration_inputs(confidence, correct, n_bins)
    n = len(conf)
    if n == 0:
        return Interval(NAN)
    design = calibration_moments_design(conf, corr, n_bins)
    s = float(squared_calibration_error_from_sums(design.sum(axis=0), n))
    value = math.sqrt(max(s, 0.0))
    if n_null <= 0 or n < MIN_INTERVAL_IMAGES:
        return Interval(value)
    from scipy.special import ndtri

    z = float(ndtri(1.0 - alpha / 2.0))
    jack = squared_calibration_error_from_sums(design.sum(axis=0) - design, n - 1.0)
    null = _calibrated_null(conf, n_bins, n_null, seed)
    # the jackknife misses the estimator's spread near 0 (where it is degenerate); the
    # null's spread is that part, so both add up
    se = math.hypot(math.sqrt((n - 1) / n * float(np.sum((jack - jack.mean()) ** 2))), null.std())
    rejected = s > float(np.quantile(null, 1.0 - alpha))  # the test of perfect calibration
    low = max(s - z * se, _REJECTED_LOW) if rejected else 0.0
    return Interval(value, math.sqrt(low), math.sqrt(max(s + z * se, 0.0)))


#: The low end (squared) when perfect calibration is rejected but ``S - z se`` is not > 0:
#: just above 0, so that the interval excludes 0 exactly when the test rejects.
_REJECTED_LOW = 1e-12


#: Bins with at least this many images draw their null sums from the normal law of a sum of
#: independent Bernoullis (exact mean and covariance); smaller bins draw every label.
NULL_NORMAL_MIN = 100


def _calibrated_null(conf: np.ndarray, n_bins: int, n_draws: int, seed: int) -> np.ndarray:
    """float64 [n_draws]: :func:`squared_calibration_error_from_sums` with every label
    redrawn as ``Bernoulli(confidence)`` (a perfectly calibrated model with these
    confidences), seeded. ``(y - c)**2 = y (1 - 2c) + c**2``: each draw needs only each bin's
    sums of y and of y (1 - 2c) — drawn label by label in bins of fewer than
    :data:`NULL_NORMAL_MIN` images, and from their bivariate normal law (exact mean and
    covariance; the sum of that many independent terms) in larger ones."""
    k, n = n_bins + 1, len(conf)
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=k).astype(np.float64)
    u = 1.0 - 2.0 * conf
    base = np.concatenate([count, -np.bincount(idx, conf, k), np.bincount(idx, conf**2, k)])
    rng, out = np.random.default_rng(seed), np.empty(n_draws)
    big = count >= NULL_NORMAL_MIN
    var = conf * (1.0 - conf)
    mean = np.stack([np.bincount(idx, conf, k), np.bincount(idx, conf * u, k)], 1)[big]
    cov = np.stack(
        [
            np.bincount(idx, var, k),
            np.bincount(idx, var * u, k),
            np.bincount(idx, var * u * u, k),
        ],
        1,
    )[big]
    small = ~big[idx]
    sc, si = conf[small].astype(np.float32), idx[small]
    onehot = np.zeros((len(sc), k), np.float32)
    onehot[np.arange(len(sc)), si] = 1.0
    weights = np.concatenate([onehot, onehot * u[small, None].astype(np.float32)], axis=1)
    step = max(1, min(n_draws, 2**22 // max(len(sc), 1)))
    for start in range(0, n_draws, step):
        rows = min(step, n_draws - start)
        sums = np.tile(base, (rows, 1))
        if len(sc):
            y = (rng.random((rows, len(sc)), dtype=np.float32) < sc).astype(np.float32)
            sy = (y @ weights).astype(np.float64)
            sums[:, k : 2 * k] += sy[:, :k]
            sums[:, 2 * k :] += sy[:, k:]
        if big.any():
            z = rng.standard_normal((rows, int(big.sum()), 2))
            a = np.sqrt(np.maximum(cov[:, 0], 0.0))
            b = np.where(a > 0, cov[:, 1] / np.where(a > 0, a, 1.0), 0.0)
            c = np.sqrt(np.maximum(cov[:, 2] - b**2, 0.0))
            draw_y = mean[:, 0] + a * z[..., 0]
            draw_yu = mean[:, 1] + b * z[..., 0] + c * z[..., 1]
            sums[:, k : 2 * k][:, big] += draw_y
            sums[:, 2 * k :][:, big] += draw_yu
        out[start : start + rows] = squared_calibration_error_from_sums(sums, float(n))
    return out


# --------------------------------------------------------------------------- bootstrap

_BOOTSTRAP_CHUNK_BYTES = 64 * 2**20


def _resample_chunk_size(arrays: Sequence[np.ndarray], n_boot: int) -> int:
    """How many resamples to draw at once so one chunk stays under ~64 MiB."""
    n = len(arrays[0])
    row_bytes = 8 + sum(a.itemsize * (a.size // n) for a in arrays)
    return int(max(1, min(n_boot, _BOOTSTRAP_CHUNK_BYTES // (n * row_bytes))))


def _bootstrap_replicates(
    statistic: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    n_boot: int,
    seed: int,
    vectorized: bool,
) -> np.ndarray:
    """float64 [n_boot, K] statistic values on joint row resamples (same draws in both
    modes); K = 1 for a scalar statistic."""
    rng, n = np.random.default_rng(seed), len(arrays[0])
    chunk = _resample_chunk_size(arrays, n_boot)
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        if vectorized:
            values = np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64)
        else:
            values = np.array(
                [np.asarray(statistic(*(a[rows] for a in arrays)), np.float64) for rows in idx]
            )
        parts.append(values.reshape(len(idx), -1))
    return np.concatenate(parts)


# ---- one resample matrix per image count: every bootstrapped metric from counts @ design


def _sum_dtype(device: str) -> Any:
    """float64 on a GPU; float32 on the CPU, where it is twice as fast (the counts are exact
    integers; a column sum of N values is within ~1e-6 relative, far below the bootstrap's
    own Monte-Carlo error)."""
    import torch

    return torch.float64 if device.startswith("cuda") else torch.float32


@functools.lru_cache(maxsize=2)
def resample_counts(n: int, n_boot: int, seed: int = 0, device: str = "cpu") -> Any:
    """The bootstrap resample matrix of N images: a tensor [n_boot, N] on ``device`` whose row
    b counts how often each image is drawn in resample b (N draws with replacement).

    Drawn once per (N, n_boot, seed) on the CPU with torch's seeded generator (so the same
    on every device) and shared by every metric, view and model of that size: the paired
    comparisons of two models see the same resamples. Cached (the last two sizes)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    counts = torch.empty((n_boot, n), dtype=_sum_dtype(device))
    step = max(1, min(n_boot, 2**20 // max(n, 1)))  # small chunks: cache-friendly scatter
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        idx = torch.randint(0, n, (rows, n), generator=gen)
        chunk = torch.zeros((rows, n), dtype=counts.dtype)
        chunk.scatter_add_(1, idx, torch.ones(1, dtype=counts.dtype).expand(rows, n))
        counts[start : start + rows] = chunk
    return counts.to(device)


def resample_sums(
    design: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, device: str = "cpu"
) -> np.ndarray:
    """float64 [n_boot, K]: the column sums of ``design`` [N, K] (per-image values) in each
    bootstrap resample of its N rows (:func:`resample_counts` @ design), on ``device``.
    A metric that is a function of column sums (a mean, a ratio, binned calibration) gets
    its bootstrap replicates from these by the same function as its value."""
    import torch

    x = np.asarray(design, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    counts = resample_counts(x.shape[0], n_boot, seed, device)
    xt = torch.from_numpy(x).to(device=device, dtype=counts.dtype)
    return (counts @ xt).to(torch.float64).cpu().numpy()


def percentile_interval(
    replicates: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval ``(lo[K], hi[K])`` at level ``1 - alpha`` of replicates
    [n_boot, K] (or [n_boot]); NaN replicates are dropped per column, NaN where none is
    left."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[:, None] if reps.ndim == 1 else reps
    lo, hi = np.full(reps.shape[1], NAN), np.full(reps.shape[1], NAN)
    for j in range(reps.shape[1]):
        col = reps[:, j][~np.isnan(reps[:, j])]
        if col.size:
            lo[j], hi[j] = np.percentile(col, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return lo, hi


def bca_interval(
    replicates: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated (BCa, Efron 1987) interval ``(lo[K], hi[K])`` at level
    ``1 - alpha``, per column, from bootstrap replicates [n_boot, K], the estimate [K] and
    the leave-one-out (jackknife) values [N, K].

    ``z0 = Phi^-1(share of replicates below the estimate, ties counted half)`` corrects for a
    biased statistic (its replicates centred away from the estimate); the acceleration
    ``a = sum(d**3) / (6 sum(d**2)**1.5)``, ``d = mean(jackknife) - jackknife``, for a
    standard error that changes with the value. The quantiles taken are
    ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = Phi^-1(alpha / 2), Phi^-1(1 - alpha / 2)``.
    With ``a = 0`` (and for any small ``a``) the interval holds the estimate whenever some
    replicates lie on each side of it (at least ``alpha / 2`` of them below it). Non-finite
    replicates and jackknife values are dropped per column; NaN where the estimate or every
    replicate is not finite."""
    from scipy.special import ndtr, ndtri

    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[:, None] if reps.ndim == 1 else reps
    est = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
    jack = np.asarray(jackknife, dtype=np.float64)
    jack = jack[:, None] if jack.ndim == 1 else jack
    lo, hi = np.full(reps.shape[1], NAN), np.full(reps.shape[1], NAN)
    for j in range(reps.shape[1]):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if not col.size or not np.isfinite(est[j]):
            continue
        share = (np.sum(col < est[j]) + 0.5 * np.sum(col == est[j])) / col.size
        z0 = float(ndtri(np.clip(share, 0.5 / col.size, 1.0 - 0.5 / col.size)))
        jk = jack[:, j][np.isfinite(jack[:, j])]
        d = jk.mean() - jk if jk.size else np.zeros(1)
        denom = 6.0 * float(np.sum(d**2)) ** 1.5
        a = float(np.sum(d**3)) / denom if denom > 0 else 0.0
        levels = []
        for z in (float(ndtri(alpha / 2.0)), float(ndtri(1.0 - alpha / 2.0))):
            shrink = 1.0 - a * (z0 + z)
            levels.append(float(ndtr(z0 + (z0 + z) / shrink)) if shrink > 0 else float(z > 0))
        lo[j], hi[j] = np.quantile(col, levels)
    return lo, hi


def bootstrap_replicates(
    statistic: Callable[..., Any],
    *arrays: np.ndarray,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    vectorized: bool = False,
) -> np.ndarray:
    """The statistic on ``n_boot`` joint row resamples of ``arrays`` (float64 [n_boot, K]),
    for statistics that are not functions of column sums (else :func:`resample_sums`)."""
    arrs = _check_bootstrap(arrays, n_boot, 0.05)
    return _bootstrap_replicates(statistic, arrs, n_boot, seed, vectorized)


def _check_bootstrap(arrays: Sequence[np.ndarray], n_boot: int, alpha: float) -> list[np.ndarray]:
    if not arrays:
        raise ValueError("a bootstrap needs at least one array")
    if not 0.0 < alpha < 1.0 or n_boot < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_boot >= 1, got {alpha}, {n_boot}")
    arrs = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 or len(a) != len(arrs[0]) for a in arrs):
        raise ValueError(f"arrays must share their first dimension: {[a.shape for a in arrs]}")
    return arrs


# --------------------------------------------------------------------------- ImageNet-X


def load_imagenet_x_annotations() -> pd.DataFrame:
    """The package's default annotations (val, top factor, prototypes filtered; cached in
    :func:`beyond_inet.reference.imagenet_x_annotations`: don't mutate)."""
    return imagenet_x_annotations()


@dataclass(frozen=True)
class ImageNetXAlignment:
    """The annotated subset of a prediction set, in input order (M annotated of N inputs).

    rows: int64 [M] positions in the input; labels: int64 [M] annotated ``class``;
    factors: float64 [M, 16] factor indicators in IMAGENET_X_FACTORS order.
    """

    rows: np.ndarray
    labels: np.ndarray
    factors: np.ndarray


def _base_names(file_names: np.ndarray) -> list[str]:
    """Base names of paths (``.../ILSVRC2012_val_00000001.JPEG`` -> the last component)."""
    return [str(f).replace("\\", "/").rsplit("/", 1)[-1] for f in np.asarray(file_names).ravel()]


def align_imagenet_x(
    file_names: np.ndarray, annotations: pd.DataFrame | None = None
) -> ImageNetXAlignment:
    """Inner-join input file names (by base name) to ImageNet-X annotations.

    Unannotated names are ignored; an annotated name given twice raises ValueError (as the
    package's sanity check). ``annotations`` defaults to :func:`load_imagenet_x_annotations`.
    """
    ann = load_imagenet_x_annotations() if annotations is None else annotations
    names = pd.Index(_base_names(file_names))
    index = pd.Index(ann["file_name"].astype(str).to_numpy())
    if index.has_duplicates:
        raise ValueError("duplicated file names among the ImageNet-X annotations")
    positions = index.get_indexer(names)
    rows = np.flatnonzero(positions >= 0)
    if names[rows].has_duplicates:
        raise ValueError("duplicated file names among the predictions")
    picked = positions[rows]
    labels = ann["class"].to_numpy(dtype=np.int64)[picked]
    factors = ann[list(IMAGENET_X_FACTORS)].to_numpy(dtype=np.float64)[picked]
    return ImageNetXAlignment(rows=rows.astype(np.int64), labels=labels, factors=factors)


def _imagenet_x_from_parts(
    hits: np.ndarray, totals: np.ndarray, n_correct: np.ndarray, n: Any
) -> np.ndarray:
    """[..., 17] factor accuracies then overall, from the per-factor hits and image counts,
    the correct count and the image count."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_factor = hits / totals
        average = n_correct / n
    return np.concatenate([per_factor, np.asarray(average)[..., None]], axis=-1)


def imagenet_x_accuracy_vector(correct: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """[..., 17]: accuracy per factor (IMAGENET_X_FACTORS order, NaN if none) then overall.

    ``correct`` is [..., M] (bool/0-1), ``factors`` [..., M, 16]; leading axes broadcast.
    """
    corr = np.asarray(correct, dtype=np.float64)
    fac = np.asarray(factors, dtype=np.float64)
    hits = np.matmul(corr[..., None, :], fac)[..., 0, :]
    return _imagenet_x_from_parts(hits, fac.sum(axis=-2), corr.sum(axis=-1), corr.shape[-1])


def _imagenet_x_summaries(acc: np.ndarray) -> np.ndarray:
    """[..., 33] from [..., 17] accuracies: the 16 factor accuracies, the 16 error ratios
    ``(1 - acc_factor) / (1 - acc_overall)`` and their mean (NaN factors left out)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (1.0 - acc[..., :-1]) / (1.0 - acc[..., -1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        mean = np.nanmean(ratio, axis=-1, keepdims=True)
    return np.concatenate([acc[..., :-1], ratio, mean], axis=-1)


def imagenet_x_error_ratio_vector(correct: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """[..., 16]: ``(1 - acc_factor) / (1 - acc_overall)``; inputs as imagenet_x_accuracy_vector."""
    n = len(IMAGENET_X_FACTORS)
    return _imagenet_x_summaries(imagenet_x_accuracy_vector(correct, factors))[..., n : 2 * n]


def imagenet_x_statistics(correct: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """[..., 33]: the 16 factor accuracies, the 16 error ratios and their mean
    (:func:`imagenet_x_accuracy_vector`, :func:`imagenet_x_error_ratio_vector`); inputs as
    those. A factor without images is NaN and left out of the mean."""
    return _imagenet_x_summaries(imagenet_x_accuracy_vector(correct, factors))


def imagenet_x_design(correct: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """float64 [M, 34]: ``correct * factors`` (16), ``factors`` (16), ``correct``, 1 — the
    per-image columns whose sums :func:`imagenet_x_statistics_from_sums` takes."""
    corr = np.asarray(correct, dtype=np.float64)
    fac = np.asarray(factors, dtype=np.float64)
    return np.concatenate([corr[:, None] * fac, fac, corr[:, None], np.ones((len(corr), 1))], 1)


def imagenet_x_statistics_from_sums(sums: np.ndarray) -> np.ndarray:
    """:func:`imagenet_x_statistics` [..., 33] from :func:`imagenet_x_design` column sums."""
    n = len(IMAGENET_X_FACTORS)
    acc = _imagenet_x_from_parts(
        sums[..., :n], sums[..., n : 2 * n], sums[..., 2 * n], sums[..., -1]
    )
    return _imagenet_x_summaries(acc)


# --------------------------------------------------------------------------- shape bias


def _category_names(values: np.ndarray) -> np.ndarray:
    """Category names as a str array; integer input is taken as an index into CATEGORIES."""
    arr = np.asarray(values).ravel()
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() >= len(CATEGORIES)):
            raise ValueError(f"category indices must be in [0, {len(CATEGORIES)})")
        return np.asarray(CATEGORIES)[arr]
    return arr.astype(str)


def _shape_fraction(decisions: np.ndarray, shapes: np.ndarray, textures: np.ndarray) -> float:
    """#shape decisions / (#shape + #texture decisions); NaN when both are zero."""
    n_shape = int(np.count_nonzero(decisions == shapes))
    n_texture = int(np.count_nonzero(decisions == textures))
    return n_shape / (n_shape + n_texture) if n_shape + n_texture else NAN


#: The shape-bias summaries that :func:`shape_bias_from_sums` gives (with intervals).
SHAPE_BIAS_SUMMARIES = ("shape_bias", "shape_accuracy", "texture_accuracy", "accuracy_all_images")


def shape_bias_design(
    decisions: np.ndarray, shapes: np.ndarray, textures: np.ndarray
) -> np.ndarray:
    """float64 [N, 5] per image: decided by shape (shape != texture), by texture (likewise),
    shape != texture, decided by shape (any image), 1 — the columns whose sums give
    :data:`SHAPE_BIAS_SUMMARIES` (:func:`shape_bias_from_sums`)."""
    d, s, t = (_category_names(x) for x in (decisions, shapes, textures))
    keep = s != t
    cols = [(d == s) & keep, (d == t) & keep, keep, d == s, np.ones(len(d), bool)]
    return np.stack(cols, axis=1).astype(np.float64)


def shape_bias_from_sums(sums: np.ndarray) -> np.ndarray:
    """[..., 4] :data:`SHAPE_BIAS_SUMMARIES` from :func:`shape_bias_design` column sums, as
    :func:`shape_bias` defines them."""
    shape, texture, kept, shape_all, n = (sums[..., j] for j in range(5))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = [shape / (shape + texture), shape / kept, texture / kept, shape_all / n]
    return np.stack(out, axis=-1)


def shape_bias(decisions: np.ndarray, shapes: np.ndarray, textures: np.ndarray) -> dict[str, float]:
    """Cue-conflict shape bias (model-vs-human ``ShapeBias``) overall and per category.

    Inputs are [N] category names (or int indices into CATEGORIES). Images whose shape and
    texture coincide are dropped first. ``shape_bias`` = #(decision == shape) /
    (#(decision == shape) + #(decision == texture)); ``shape_accuracy`` / ``texture_accuracy``
    are fractions of the KEPT images (model-vs-human divides by all images incl. dropped ones;
    the ratio is the same); ``accuracy_all_images`` is the fraction of ALL images decided by
    their shape (the paper's "accuracy (top-1) vs shape label"). ``shape_bias:<c>`` uses the
    images whose SHAPE label is c, as model-vs-human's per-category plots
    (``df.query("category == c")``, category = shape).
    NaN when a ratio has no shape/texture decisions (or no images).
    """
    d, s, t = (_category_names(x) for x in (decisions, shapes, textures))
    if not d.shape == s.shape == t.shape:
        raise ValueError(f"decisions/shapes/textures differ in size: {d.size}, {s.size}, {t.size}")
    all_images = float(np.mean(d == s)) if d.size else NAN  # before dropping shape == texture
    keep = s != t
    d, s, t = d[keep], s[keep], t[keep]
    result = {
        "shape_bias": _shape_fraction(d, s, t),
        "shape_accuracy": float(np.mean(d == s)) if d.size else NAN,
        "texture_accuracy": float(np.mean(d == t)) if d.size else NAN,
        "accuracy_all_images": all_images,
    }
    for category in CATEGORIES:
        mask = s == category
        result[f"shape_bias:{category}"] = _shape_fraction(d[mask], s[mask], t[mask])
    return result
