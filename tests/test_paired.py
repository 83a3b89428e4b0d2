"""Paired statistics against independent implementations and hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beyond_inet.scoring.metrics import resample_counts
from beyond_inet.scoring.paired import (
    bootstrap_difference_p,
    compare,
    error_consistency,
    holm,
    mcnemar_exact,
    paired_bootstrap,
)


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
    # the oracle: each resample of the shared matrix written out as its images, applied to both
    counts = resample_counts(400, 500, 3).numpy().astype(int)
    reps = [np.repeat(a, c).mean() - np.repeat(b, c).mean() for c in counts]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    # and within Monte-Carlo error of a plain numpy index bootstrap
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 400, (4000, 400))
    plain = np.quantile(a[idx].mean(axis=1) - b[idx].mean(axis=1), [0.025, 0.975])
    assert np.allclose((lo, hi), plain, atol=0.012)
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
    # model-vs-human's edge cases: observed consistency 1 is kappa 1, whatever the accuracies
    assert error_consistency(np.ones(5, bool), np.ones(5, bool)) == 1.0  # both always right
    assert error_consistency(np.zeros(5, bool), np.zeros(5, bool)) == 1.0  # both always wrong
    assert error_consistency(np.ones(4, bool), np.zeros(4, bool)) == 0.0  # c_obs 0 = c_exp 0
    one_always_right = error_consistency(np.ones(4, bool), np.array([1, 1, 0, 0], bool))
    assert one_always_right == pytest.approx((0.5 - 0.5) / (1 - 0.5))  # c_exp = p2
    assert np.isnan(error_consistency(np.zeros(0, bool), np.zeros(0, bool)))


def test_holm_equals_statsmodels() -> None:
    import statsmodels.stats.multitest as mt

    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001])
    np.testing.assert_allclose(holm(p), mt.multipletests(p, method="holm")[1])


def test_compare_bundles_the_same_functions() -> None:
    a, b = _pairs(400, 9)
    c = compare(a, b, n_boot=200, seed=3)
    assert c.test == mcnemar_exact(a, b)
    assert (c.diff, c.ci_low, c.ci_high) == paired_bootstrap(a, b, 200, 3)
    assert c.kappa == error_consistency(a, b)
    no_boot = compare(a, b, n_boot=0)
    assert no_boot.diff == pytest.approx(a.mean() - b.mean()) and np.isnan(no_boot.ci_low)


def test_precompute_stores_the_paired_comparisons_of_a_pass(tmp_path: Path) -> None:
    """Three tiny models in one pass over cue-conflict stimuli: one row per model pair,
    equal to statsmodels' exact McNemar and the hand formula of kappa on the stored
    correctness; a --force rerun replaces them with the new runs' rows."""
    import statsmodels.stats.contingency_tables as sm

    from beyond_inet.datasets.cue_conflict import CATEGORIES
    from beyond_inet.store import Store
    from precompute.cli import main
    from tests.conftest import write_cue_conflict

    pairs = [(s, CATEGORIES[(i * 5 + k) % 16]) for i, s in enumerate(CATEGORIES) for k in (1, 2)]
    write_cue_conflict(tmp_path / "data" / "cue-conflict", pairs)
    store = Store(tmp_path / "p.duckdb")
    argv = [
        "--model",
        "timm:test_vit,timm:test_convnext,open_clip:test-tiny-clip",
        "--random-weights",
    ]
    argv += ["--data-root", str(tmp_path / "data"), "--dataset", "cue-conflict"]
    argv += ["--store", str(store.path), "--workers", "0", "--bootstrap", "50", "--quiet"]
    assert main(argv) == 0
    got = store.query("SELECT * FROM paired ORDER BY model_a, model_b")
    assert len(got) == 3 and set(got["view"]) == {"standard"}
    preds = store.query(
        "SELECT r.model, p.sample_id, p.correct FROM predictions p JOIN runs r USING (run_id)"
    ).pivot(index="sample_id", columns="model", values="correct")
    for row in got.itertuples():
        a, b = preds[row.model_a].to_numpy(bool), preds[row.model_b].to_numpy(bool)
        assert (row.both_right, row.only_a, row.only_b, row.both_wrong) == (
            int((a & b).sum()),
            int((a & ~b).sum()),
            int((~a & b).sum()),
            int((~a & ~b).sum()),
        )
        table = [[row.both_right, row.only_a], [row.only_b, row.both_wrong]]
        assert row.p_value == pytest.approx(sm.mcnemar(table, exact=True).pvalue)
        assert row.accuracy_diff == pytest.approx(a.mean() - b.mean())
        p1, p2 = a.mean(), b.mean()
        c_exp = p1 * p2 + (1 - p1) * (1 - p2)
        if c_exp < 1:
            assert row.kappa == pytest.approx(((a == b).mean() - c_exp) / (1 - c_exp))
        assert row.n_images == len(pairs) and row.n_boot == 50
    assert main([*argv, "--force"]) == 0
    again = store.query("SELECT run_a, run_b FROM paired")
    current = set(store.query("SELECT run_id FROM runs")["run_id"])
    assert len(again) == 3 and set(again["run_a"]) | set(again["run_b"]) <= current


def test_bootstrap_difference_p_equals_a_hand_written_resampling() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.0, 1, 300), rng.normal(0.15, 1, 300)

    def stat(v: np.ndarray) -> float:
        return float(np.median(v))

    got = bootstrap_difference_p(stat, (x,), (y,), n_boot=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 300, (500, 300))
    d = np.array([np.median(x[i]) - np.median(y[i]) for i in idx])
    want = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))
    assert got == pytest.approx(want)
    assert bootstrap_difference_p(stat, (x,), (x,), n_boot=200) == 1.0  # no difference
    vec = bootstrap_difference_p(
        lambda v: np.median(v, axis=-1), (x,), (y,), n_boot=500, seed=7, vectorized=True
    )
    assert vec == pytest.approx(want)  # the same draws either way
