"""Paired comparison of two decision makers on the same images: pure functions on arrays.

* :func:`mcnemar_exact` — McNemar's exact test on per-image correctness: under the null the
  discordant images (one right, the other wrong) split 50 / 50, so the p-value is scipy's
  two-sided binomial test of one discordant count out of both.
* :func:`paired_bootstrap` — a percentile interval of the accuracy difference, both models
  resampled with the same image indices.
* :func:`error_consistency` — Geirhos et al. (NeurIPS 2020): Cohen's kappa of trial-by-trial
  agreement (both right or both wrong) against the agreement expected from the two accuracies
  alone, ``(c_obs - c_exp) / (1 - c_exp)`` with ``c_exp = p1 p2 + (1 - p1)(1 - p2)``.
* :func:`bootstrap_difference_p` — a paired bootstrap test of any metric's difference
  (ECE, shape bias, error ratio): both decision makers resampled with the same images.
* :func:`holm` — Holm's step-down adjustment of a family of p-values.
* :func:`compare` — all of the above for one pair (what the dashboard shows and
  ``precompute`` stores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class McNemar:
    """The 2x2 table's discordant counts and the exact two-sided p-value."""

    both_right: int
    only_a: int  # A right, B wrong
    only_b: int  # A wrong, B right
    both_wrong: int
    p_value: float


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    return a, b


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemar:
    """McNemar's exact test of ``a_correct`` vs ``b_correct`` (the same images, in order)."""
    from scipy.stats import binomtest

    a, b = _pair(a_correct, b_correct)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return McNemar(int(np.sum(a & b)), only_a, only_b, int(np.sum(~a & ~b)), p)


def paired_bootstrap(
    a_correct: np.ndarray,
    b_correct: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    device: str = "cpu",
) -> tuple[float, float, float]:
    """(accuracy of A minus B, its ``1 - alpha`` percentile interval) with both models
    resampled by the same images: the view's resample matrix
    (:func:`~beyond_inet.scoring.metrics.resample_counts`), the one its metrics use."""
    from beyond_inet.scoring.metrics import percentile_interval, resample_sums

    a, b = _pair(a_correct, b_correct)
    d = a.astype(np.float64) - b.astype(np.float64)
    if not len(d):
        return float("nan"), float("nan"), float("nan")
    reps = resample_sums(d, n_boot, seed, device)[:, 0] / len(d)
    lo, hi = percentile_interval(reps, alpha)
    return float(d.mean()), float(lo[0]), float(hi[0])


def error_consistency(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Cohen's kappa of error consistency (Geirhos et al. 2020), as model-vs-human defines
    it: 1.0 when the observed consistency is 1 (every trial both right or both wrong — also
    when both are always right or always wrong, where the expected consistency is 1 too),
    else ``(c_obs - c_exp) / (1 - c_exp)``; NaN only without trials."""
    a, b = _pair(a_correct, b_correct)
    if not len(a):
        return float("nan")
    c_obs = float(np.mean(a == b))
    if c_obs == 1.0:
        return 1.0
    p1, p2 = float(a.mean()), float(b.mean())
    c_exp = p1 * p2 + (1 - p1) * (1 - p2)  # < 1 here: c_exp = 1 forces c_obs = 1
    return (c_obs - c_exp) / (1.0 - c_exp)


def bootstrap_difference_p(
    statistic: Callable[..., float],
    a: tuple[np.ndarray, ...],
    b: tuple[np.ndarray, ...],
    n_boot: int = 1000,
    seed: int = 0,
    vectorized: bool = False,
) -> float:
    """Two-sided paired bootstrap p-value of ``statistic(*a) - statistic(*b)`` (the arrays
    of ``a`` and ``b``: per image, aligned; rows resampled with the same indices for both):
    twice the smaller share of replicate differences on either side of 0, at most 1 (the
    percentile interval at level ``1 - p`` just touches 0). ``vectorized``: the statistic
    takes arrays with a leading resample axis (as in
    :func:`~beyond_inet.scoring.metrics.bootstrap_replicates`)."""
    from beyond_inet.scoring.metrics import bootstrap_replicates

    k = len(a)
    reps = bootstrap_replicates(
        lambda *arrs: statistic(*arrs[:k]) - statistic(*arrs[k:]),
        *a,
        *b,
        n_boot=n_boot,
        seed=seed,
        vectorized=vectorized,
    )[:, 0]
    reps = reps[~np.isnan(reps)]
    if not reps.size:
        return float("nan")
    return float(min(1.0, 2 * min(np.mean(reps <= 0), np.mean(reps >= 0))))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


@dataclass(frozen=True)
class PairedComparison:
    """Everything the paired comparison of two decision makers on the same images says."""

    n: int
    accuracy_a: float
    accuracy_b: float
    test: McNemar
    diff: float  # accuracy of A minus B
    ci_low: float
    ci_high: float
    kappa: float


def compare(
    a_correct: np.ndarray,
    b_correct: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "cpu",
) -> PairedComparison:
    """McNemar's exact test, the paired bootstrap interval (none when ``n_boot`` is 0) and
    error consistency of two aligned correctness arrays."""
    a, b = _pair(a_correct, b_correct)
    nan = float("nan")
    if n_boot > 0:
        diff, lo, hi = paired_bootstrap(a, b, n_boot, seed, device=device)
    else:  # no resamples: the difference without an interval
        diff, lo, hi = (float(a.mean() - b.mean()) if len(a) else nan), nan, nan
    return PairedComparison(
        n=len(a),
        accuracy_a=float(a.mean()) if len(a) else nan,
        accuracy_b=float(b.mean()) if len(b) else nan,
        test=mcnemar_exact(a, b),
        diff=diff,
        ci_low=lo,
        ci_high=hi,
        kappa=error_consistency(a, b),
    )
