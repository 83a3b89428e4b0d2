"""Intervals that mean what they say: BCa bootstrap intervals for the metrics that are
functions of per-image sums, the debiased RMS calibration error's own interval (coverage on
simulated calibrated and overconfident models), and no interval where none is valid (ECE and
MCE plug-ins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from beyond_inet.scoring import evaluations as E
from beyond_inet.scoring import metrics as M


def _ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.sum(axis=axis) / b.sum(axis=axis)


def test_bca_matches_scipy_on_a_biased_ratio_statistic() -> None:
    """The production interval path (``_intervals`` on a design and its finish) against
    scipy's own BCa (its resamples, its jackknife), on a skewed ratio statistic where BCa
    and the percentile interval differ."""
    rng = np.random.default_rng(3)
    n = 60
    b = rng.exponential(1.0, n) + 0.05
    a = b * rng.lognormal(0.0, 0.8, n)
    design = np.stack([a, b], axis=1)
    opts = E.ScoringOptions(n_boot=20_000, seed=1)
    lo, hi = E._intervals(design, lambda s: s[:, :1] / s[:, 1:], opts)
    ref, pct = (
        stats.bootstrap(
            (a, b),
            _ratio_of_means,
            paired=True,
            vectorized=True,
            n_resamples=20_000,
            method=method,
            random_state=np.random.default_rng(7),
        ).confidence_interval
        for method in ("BCa", "percentile")
    )
    width = ref.high - ref.low
    assert abs(lo[0] - ref.low) < 0.03 * width and abs(hi[0] - ref.high) < 0.03 * width
    # closer to scipy's BCa than to the percentile interval, which differs here by more
    # than the Monte-Carlo error of either
    off_bca = abs(lo[0] - ref.low) + abs(hi[0] - ref.high)
    off_pct = abs(lo[0] - pct.low) + abs(hi[0] - pct.high)
    assert off_bca < 0.5 * off_pct, (off_bca, off_pct)


def test_bca_hand_computed_acceleration_and_bias() -> None:
    """z0 from the share below the estimate, a from the jackknife, by hand."""
    reps = np.arange(1, 101, dtype=np.float64)[:, None]  # 1..100
    estimate = np.array([30.0])  # 29 below, one equal (counted half): z0 = Phi^-1(0.295)
    jack = np.array([[1.0], [2.0], [4.0], [9.0]])
    d = jack[:, 0].mean() - jack[:, 0]
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    z0 = stats.norm.ppf(0.295)
    levels = [
        stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        for z in (stats.norm.ppf(0.025), stats.norm.ppf(0.975))
    ]
    lo, hi = M.bca_interval(reps, estimate, jack)
    assert lo[0] == pytest.approx(np.quantile(reps[:, 0], levels[0]))
    assert hi[0] == pytest.approx(np.quantile(reps[:, 0], levels[1]))


def test_bca_degenerate_and_nan_columns() -> None:
    reps = np.stack([np.full(50, 1.0), np.full(50, np.nan)], axis=1)
    lo, hi = M.bca_interval(reps, np.array([1.0, 0.5]), np.ones((5, 2)))
    assert (lo[0], hi[0]) == (1.0, 1.0)
    assert math.isnan(lo[1]) and math.isnan(hi[1])


def _squared_error_oracle(conf: np.ndarray, correct: np.ndarray) -> float:
    """Kumar et al.'s debiased squared calibration error written out bin by bin, with
    torchmetrics' own binning (``torch.bucketize`` on float32 edges)."""
    edges = torch.linspace(0, 1, 16)
    bins = torch.bucketize(torch.tensor(conf, dtype=torch.float32), edges, right=True) - 1
    total = 0.0
    for k in bins.unique().tolist():
        sel = (bins == k).numpy()
        d = correct[sel].astype(np.float64) - conf[sel]
        if len(d) < 2:
            continue
        total += len(d) / len(conf) * (d.mean() ** 2 - d.var(ddof=1) / len(d))
    return total


def test_rms_calibration_error_estimate_by_hand() -> None:
    rng = np.random.default_rng(0)
    conf = rng.beta(5, 1.5, 700)
    conf[:3] = 1.0  # torchmetrics' extra bin for 1.0
    correct = rng.random(700) < conf**1.5
    got = M.rms_calibration_error(conf, correct, n_null=0)
    s = _squared_error_oracle(conf, correct)
    assert got.value == pytest.approx(math.sqrt(max(s, 0.0)), rel=1e-10)
    assert math.isnan(got.low) and math.isnan(got.high)


def test_rms_calibration_error_edge_cases() -> None:
    assert math.isnan(M.rms_calibration_error(np.array([]), np.array([])).value)
    one = M.rms_calibration_error(np.array([0.7]), np.array([True]))
    assert one.value == 0.0 and math.isnan(one.low)  # one image: no bin of two, no interval
    # a perfectly calibrated model on many images: estimate near 0, interval from 0
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, 20_000)
    got = M.rms_calibration_error(conf, rng.random(20_000) < conf)
    assert got.low == 0.0 and got.value <= got.high < 0.03


def _population_rms(kind: str, rng: np.random.Generator) -> float:
    conf, truth = _model(kind, rng, 2_000_000)
    bins = np.searchsorted(M.bin_edges(15), conf.astype(np.float32), side="right") - 1
    gap = np.bincount(bins, truth - conf, minlength=16)
    count = np.bincount(bins, minlength=16)
    return float(np.sqrt((gap**2 / np.maximum(count, 1)).sum() / len(conf)))


def _model(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences shaped like an ImageNet classifier's (mass near 1) and each image's
    true probability of being right: equal to its confidence (calibrated), its power 1.2
    (mildly overconfident, RMS error ~0.03) or its square (overconfident, ECE ~0.12)."""
    conf = rng.beta(6.0, 1.2, n) * 0.999 + 0.0005
    power = {"calibrated": 1.0, "mild": 1.2, "overconfident": 2.0}[kind]
    return conf, conf**power


@pytest.mark.parametrize("kind", ["calibrated", "overconfident"])
def test_rms_calibration_error_interval_covers_95_percent(kind: str) -> None:
    """On 500 simulated test sets of 800 images, the 95% interval holds the population value
    in 93-97% of them: for a calibrated model (the value sits on its boundary, 0) and an
    overconfident one. The percentile bootstrap of the plug-in ECE would cover 0 never."""
    rng = np.random.default_rng(11)
    truth = _population_rms(kind, rng)
    trials, hits = 500, 0
    for i in range(trials):
        conf, p = _model(kind, rng, 800)
        got = M.rms_calibration_error(conf, rng.random(800) < p, seed=i)
        assert got.low <= got.value <= got.high
        hits += got.low <= truth <= got.high
    assert abs(hits / trials - 0.95) <= 0.02, hits / trials


def test_rms_calibration_error_interval_never_undercovers_a_mild_miscalibration() -> None:
    """Between the two cases above (a true error of ~0.03, where a boundary rule alone
    covered only ~88%), the interval is conservative: it covers at least 93%."""
    rng = np.random.default_rng(12)
    truth = _population_rms("mild", rng)
    hits = 0
    for i in range(300):
        conf, p = _model("mild", rng, 800)
        got = M.rms_calibration_error(conf, rng.random(800) < p, seed=i)
        hits += got.low <= truth <= got.high
    assert hits / 300 >= 0.93, hits / 300


def test_scored_calibration_rows() -> None:
    """ECE and MCE carry no interval; the debiased RMS error, NLL and Brier do, and each
    holds its estimate."""
    rng = np.random.default_rng(2)
    conf = rng.beta(6, 1.2, 500)
    correct = (rng.random(500) < conf - 0.05).astype(np.float64)
    p_true = np.where(correct > 0, conf, (1 - conf) / 3)
    brier = (1 - p_true) ** 2
    opts = E.ScoringOptions(200)
    rows = {r.metric: r for r in E._calibration_set(conf, correct, p_true, brier, opts)}
    assert {"ece", "mce", "rmsce", "nll", "brier"} <= set(rows)
    for name in ("ece", "mce"):
        assert math.isnan(rows[name].ci_low) and math.isnan(rows[name].ci_high)
    for name in ("rmsce", "nll", "brier"):
        r = rows[name]
        assert r.ci_low <= r.value <= r.ci_high, r
    assert rows["ece"].value == pytest.approx(M.expected_calibration_error(conf, correct))


def test_demo_store_intervals_hold_their_estimates(tmp_path) -> None:
    """The cases the audit found (the demo store: 500 ImageNet val images; ECE after scaling,
    MCE, ImageNet-A ECE): every stored interval holds its value, and ECE / MCE have none."""
    from beyond_inet.store import Store
    from dashboard import synthetic

    plans = [p for p in synthetic.paper_suite() if p.name in ("imagenet-val", "imagenet-a")]
    plans = [synthetic.SyntheticDataset(p.name, p.n_images, ("standard",)) for p in plans]
    store = tmp_path / "demo.duckdb"
    synthetic.fill_store(store, 0.01, datasets=plans, n_boot=100)
    with Store(store).reader() as con:
        df = con.execute("SELECT metric, value, ci_low, ci_high FROM metrics").df()
    assert len(df) > 50
    for name in ("ece", "mce", "ece_ts", "mce_ts"):
        sel = df[df["metric"] == name]
        assert len(sel) and sel["ci_low"].isna().all(), name
    has = df.dropna(subset=["ci_low", "ci_high", "value"])
    assert {"rmsce", "rmsce_ts", "top1", "nll"} <= set(has["metric"])
    bad = has[(has["ci_low"] > has["value"] + 1e-12) | (has["ci_high"] < has["value"] - 1e-12)]
    assert bad.empty, bad


def test_the_calibrated_null_matches_label_by_label_draws() -> None:
    """Large bins draw their null sums from a bivariate normal law; its quantiles match
    drawing every label as Bernoulli(confidence) (the definition), within Monte-Carlo error."""
    rng = np.random.default_rng(4)
    conf = rng.beta(6, 1.2, 3000) * 0.999
    fast = M._calibrated_null(conf, 15, 4000, seed=1)
    idx, k = M.bin_index(conf, 15), 16
    exact = []
    for _ in range(4000):
        d = (rng.random(len(conf)) < conf) - conf
        sums = np.concatenate(
            [np.bincount(idx, minlength=k), np.bincount(idx, d, k), np.bincount(idx, d * d, k)]
        ).astype(np.float64)
        exact.append(M.squared_calibration_error_from_sums(sums, float(len(conf))))
    for q in (0.5, 0.9, 0.95):
        a, b = np.quantile(fast, q), np.quantile(exact, q)
        assert abs(a - b) <= 0.1 * np.quantile(exact, 0.99), (q, a, b)
