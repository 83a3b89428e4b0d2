"""Paired statistics against independent implementations and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from beyond_inet.scoring.paired import error_consistency, holm, mcnemar_exact, paired_bootstrap


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.8
    b = np.where(rng.random(n) < 0.7, a, rng.random(n) < 0.75)
    return a, b


def test_mcnemar_equals_statsmodels_exact() -> None:
    import statsmodels.stats.contingency_tables as sm

    for seed in range(5):
        a, b = _pairs(300, seed)
        got = mcnemar_exact(a, b)
        table = [[got.both_right, got.only_a], [got.only_b, got.both_wrong]]
        want = sm.mcnemar(table, exact=True)
        assert got.p_value == pytest.approx(want.pvalue, rel=1e-12)
        assert got.both_right + got.only_a + got.only_b + got.both_wrong == 300


def test_mcnemar_hand_counted_table() -> None:
    # A right / B wrong on 3 images, the reverse on none: p = 2 * 0.5**3 = 0.25
    a = np.array([1, 1, 1, 1, 0, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 0], bool)
    r = mcnemar_exact(a, b)
    assert (r.both_right, r.only_a, r.only_b, r.both_wrong) == (1, 3, 0, 2)
    assert r.p_value == pytest.approx(0.25)
    assert mcnemar_exact(a, a).p_value == 1.0


def test_paired_bootstrap_uses_the_same_resamples() -> None:
    a, b = _pairs(400, 7)
    diff, lo, hi = paired_bootstrap(a, b, n_boot=500, seed=3)
    assert diff == pytest.approx(a.mean() - b.mean())
    rng = np.random.default_rng(3)  # the oracle: resample image indices, apply to both
    reps = []
    for k in range(0, 500, 256):
        idx = rng.integers(0, 400, (min(256, 500 - k), 400))
        reps += list(a[idx].mean(axis=1) - b[idx].mean(axis=1))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    assert lo < diff < hi
    same = paired_bootstrap(a, a, n_boot=200)
    assert same == (0.0, 0.0, 0.0)  # identical decisions: no spread at all


def test_error_consistency_hand_computed_and_model_vs_human_definition() -> None:
    # 10 trials: both right on 5, both wrong on 2, disagree on 3
    a = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1], bool)
    c_obs = 7 / 10
    p1, p2 = 0.6, 0.7
    c_exp = p1 * p2 + (1 - p1) * (1 - p2)  # 0.54
    assert error_consistency(a, b) == pytest.approx((c_obs - c_exp) / (1 - c_exp))
    assert error_consistency(a, a) == pytest.approx(1.0)
    rng = np.random.default_rng(0)  # independent decision makers: kappa near 0
    x, y = rng.random(20000) < 0.7, rng.random(20000) < 0.6
    assert abs(error_consistency(x, y)) < 0.03
    assert np.isnan(error_consistency(np.ones(5, bool), np.ones(5, bool)))


def test_holm_equals_statsmodels() -> None:
    import statsmodels.stats.multitest as mt

    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001])
    np.testing.assert_allclose(holm(p), mt.multipletests(p, method="holm")[1])
