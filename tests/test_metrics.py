"""Tests for beyond_inet.metrics: hand-computed cases and oracles (torch, torchmetrics,
imagenet_x, the authors' recorded cue-conflict decisions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from beyond_inet.datasets.cue_conflict import CATEGORIES, parse_stimulus_name
from beyond_inet.scoring import metrics

SHARED = Path(__file__).resolve().parents[2] / "shared"
DECISIONS_DIR = SHARED / "reference" / "cue_conflict_model_decisions"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- accuracy & losses


def test_topk_hits_hand_case() -> None:
    topk = np.array([[3, 1, 2], [0, 2, 1], [5, 4, 0], [1, 0, 2]])
    labels = np.array([3, 2, 9, 2])
    assert metrics.topk_hits(topk, labels, 1).tolist() == [True, False, False, False]
    assert metrics.topk_hits(topk, labels, 2).tolist() == [True, True, False, False]
    assert metrics.topk_hits(topk, labels, 3).tolist() == [True, True, False, True]


def test_topk_hits_rejects_bad_k_and_shapes() -> None:
    topk = np.zeros((2, 3), dtype=int)
    with pytest.raises(ValueError):
        metrics.topk_hits(topk, np.zeros(2, dtype=int), 4)
    with pytest.raises(ValueError):
        metrics.topk_hits(topk, np.zeros(2, dtype=int), 0)
    with pytest.raises(ValueError):
        metrics.topk_hits(topk, np.zeros(3, dtype=int), 1)
    assert metrics.topk_hits(np.zeros((0, 5), dtype=int), np.zeros(0), 5).shape == (0,)


def test_nll_matches_torch_nll_loss() -> None:
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(size=(300, 20)) * 2.0)
    labels = rng.integers(0, 20, size=300)
    expected = torch.nn.functional.nll_loss(
        torch.log(torch.from_numpy(probs)), torch.from_numpy(labels)
    ).item()
    got = metrics.negative_log_likelihood(probs[np.arange(300), labels])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_nll_clips_zero_probabilities() -> None:
    got = metrics.negative_log_likelihood(np.array([0.0, 1.0]), eps=1e-12)
    np.testing.assert_allclose(got, -math.log(1e-12) / 2)
    assert math.isnan(metrics.negative_log_likelihood(np.array([])))


def test_brier_hand_case() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    values = metrics.brier_per_image(probs, np.array([0, 1]))
    np.testing.assert_allclose(values, [0.09 + 0.04 + 0.01, 0.01 + 0.81 + 0.64])
    np.testing.assert_allclose(metrics.brier_score(values), 0.8)


def test_brier_matches_naive_across_chunks() -> None:
    rng = np.random.default_rng(2)
    probs = _softmax(rng.normal(size=(5000, 1000))).astype(np.float32)  # > one chunk
    labels = rng.integers(0, 1000, size=5000)
    onehot = np.eye(1000)[labels]
    expected = ((probs.astype(np.float64) - onehot) ** 2).sum(axis=1)
    np.testing.assert_allclose(metrics.brier_per_image(probs, labels), expected, rtol=1e-12)


# --------------------------------------------------------------------------- calibration


def _torchmetrics_ce(probs: np.ndarray, labels: np.ndarray, norm: str) -> float:
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=15, norm=norm)
    return float(metric(torch.from_numpy(probs), torch.from_numpy(labels)))


def _ours_ce(probs: np.ndarray, labels: np.ndarray, norm: str) -> float:
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    fn = metrics.expected_calibration_error if norm == "l1" else metrics.max_calibration_error
    return fn(conf, correct, n_bins=15)


def _edge_rows(dtype: type) -> np.ndarray:
    """16-class rows whose max is exactly each torchmetrics bin edge 1..15 (incl. 1.0)."""
    edges = torch.linspace(0, 1, 16, dtype=torch.float32).numpy()[1:].astype(dtype)
    rest = ((1 - edges) / 15).astype(dtype)
    rows = np.repeat(rest[:, None], 16, axis=1)
    rows[:, 0] = edges
    return np.repeat(rows, 3, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("norm", ["l1", "max"])
def test_calibration_error_matches_torchmetrics(seed: int, norm: str) -> None:
    rng = np.random.default_rng(seed)
    n = 4000
    probs = _softmax(rng.normal(size=(n, 16)) * rng.uniform(0.5, 6.0, size=(n, 1)))
    probs = np.concatenate([probs.astype(np.float32), _edge_rows(np.float32)])
    noise = rng.integers(0, 16, len(probs))
    labels = np.where(rng.random(len(probs)) < 0.6, probs.argmax(1), noise)
    np.testing.assert_allclose(
        _ours_ce(probs, labels, norm), _torchmetrics_ce(probs, labels, norm), rtol=1e-5
    )


@pytest.mark.parametrize("norm", ["l1", "max"])
def test_calibration_float64_near_edges_matches_torchmetrics(norm: str) -> None:
    """float64 confidences just below an edge round onto it in float32, as in torchmetrics."""
    rng = np.random.default_rng(7)
    probs = _edge_rows(np.float64)
    probs[:, 0] -= rng.choice([0.0, 1e-10, 1e-7], size=len(probs))
    probs = np.concatenate([probs, _softmax(rng.normal(size=(500, 16)) * 3)])
    labels = rng.integers(0, 16, size=len(probs))
    np.testing.assert_allclose(
        _ours_ce(probs, labels, norm), _torchmetrics_ce(probs, labels, norm), rtol=1e-5
    )


def test_calibration_bins_confidence_one_gets_its_own_bin() -> None:
    conf = np.array([1.0, 0.97, 0.6])
    correct = np.array([False, True, True])
    table = metrics.calibration_bins(conf, correct)
    assert list(table.columns) == [
        "bin",
        "bin_lower",
        "bin_upper",
        "count",
        "n_correct",
        "accuracy",
        "mean_confidence",
        "gap",
    ]
    assert len(table) == 16 and table["bin"].tolist() == list(range(16))
    assert table["count"].tolist() == [0] * 9 + [1, 0, 0, 0, 0, 1, 1]
    last = table.iloc[-1]
    assert (last.bin_lower, last.bin_upper, last.accuracy, last.mean_confidence) == (1, 1, 0, 1)
    assert table["accuracy"].iloc[:9].isna().all() and table["gap"].iloc[:9].isna().all()
    expected_ece = (1.0 + 0.03 + 0.4) / 3  # 1.0 not merged with 0.97 (that would give 0.4567)
    np.testing.assert_allclose(metrics.expected_calibration_error(conf, correct), expected_ece)
    np.testing.assert_allclose(metrics.max_calibration_error(conf, correct), 1.0)


def test_bin_index_and_reliability_bins_hand_computed() -> None:
    """Four bins, float32 edges 0, .25, .5, .75, 1 (exact): a confidence on an edge opens
    the bin above it, 1.0 gets the extra bin; the reliability table and ECE / MCE by hand."""
    np.testing.assert_array_equal(metrics.bin_edges(4), [0.0, 0.25, 0.5, 0.75, 1.0])
    assert not metrics.bin_edges(4).flags.writeable
    conf = np.array([0.1, 0.2, 0.25, 0.5, 0.74, 0.75, 0.99, 1.0])
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 0], bool)
    assert metrics.bin_index(conf, 4).tolist() == [0, 0, 1, 2, 2, 3, 3, 4]
    table = metrics.calibration_bins(conf, correct, 4)
    assert table["count"].tolist() == [2, 1, 2, 2, 1]
    assert table["n_correct"].tolist() == [1, 1, 1, 2, 0]
    np.testing.assert_allclose(table["accuracy"], [0.5, 1.0, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(table["mean_confidence"], [0.15, 0.25, 0.62, 0.87, 1.0])
    # ECE = (2 * .35 + 1 * .75 + 2 * .12 + 2 * .13 + 1 * 1.0) / 8, MCE = the 1.0 bin's gap
    assert metrics.expected_calibration_error(conf, correct, 4) == pytest.approx(2.95 / 8)
    assert metrics.max_calibration_error(conf, correct, 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.bin_edges(0)


def test_calibration_bins_are_lower_inclusive() -> None:
    edges = torch.linspace(0, 1, 16, dtype=torch.float32).numpy()
    conf = edges[:-1].astype(np.float64)  # exactly on each lower edge
    table = metrics.calibration_bins(conf, np.ones(15, dtype=bool))
    assert table["count"].tolist() == [1] * 15 + [0]
    np.testing.assert_allclose(table["bin_lower"].to_numpy()[:15], edges[:-1])
    np.testing.assert_allclose(table["bin_upper"].to_numpy()[:15], edges[1:])
    np.testing.assert_allclose(table["mean_confidence"].to_numpy()[:15], edges[:-1])


def test_calibration_validation_and_empty() -> None:
    with pytest.raises(ValueError):
        metrics.calibration_bins(np.array([1.2]), np.array([True]))
    with pytest.raises(ValueError):
        metrics.calibration_bins(np.array([0.5, 0.6]), np.array([True]))
    with pytest.raises(ValueError):
        metrics.calibration_bins(np.array([0.5]), np.array([True]), n_bins=0)
    assert math.isnan(metrics.expected_calibration_error(np.array([]), np.array([])))
    assert math.isnan(metrics.max_calibration_error(np.array([]), np.array([])))


# --------------------------------------------------------------------------- bootstrap


def test_resample_counts_are_seeded_bootstrap_draws() -> None:
    counts = metrics.resample_counts(500, 400, seed=5).numpy()
    assert counts.shape == (400, 500)
    assert np.all(counts.sum(axis=1) == 500)  # each resample draws N images
    assert np.array_equal(counts, metrics.resample_counts(500, 400, seed=5).numpy())
    assert not np.array_equal(counts, metrics.resample_counts(500, 400, seed=6).numpy())
    # multinomial(N, 1/N): each image drawn once on average, variance 1 - 1/N
    assert abs(counts.mean() - 1.0) < 1e-12
    assert abs(counts.var() - (1 - 1 / 500)) < 0.02


def test_resample_sums_are_the_explicit_resamples_sums() -> None:
    x = np.random.default_rng(1).normal(size=(300, 3))
    sums = metrics.resample_sums(x, n_boot=50, seed=2)
    counts = metrics.resample_counts(300, 50, seed=2).numpy().astype(int)
    oracle = np.array([np.repeat(x, c, axis=0).sum(axis=0) for c in counts])
    np.testing.assert_allclose(sums, oracle, rtol=1e-5, atol=1e-4)  # float32 sums on the CPU


def test_interval_of_a_mean_is_the_normal_one() -> None:
    x = np.random.default_rng(3).normal(size=2000)
    lo, hi = metrics.percentile_interval(metrics.resample_sums(x, 1000)[:, 0] / len(x))
    assert lo[0] < x.mean() < hi[0]
    normal_width = 2 * 1.96 * x.std() / math.sqrt(len(x))
    assert abs((hi[0] - lo[0]) / normal_width - 1) < 0.1
    nan = metrics.percentile_interval(np.array([[np.nan, 1.0], [np.nan, 3.0]]))
    assert np.isnan(nan[0][0]) and nan[0][1] == pytest.approx(1.05)


def test_metrics_from_sums_equal_the_metric_functions() -> None:
    rng = np.random.default_rng(8)
    conf = rng.random(700)
    conf[:5] = 1.0  # torchmetrics' extra bin
    corr = rng.random(700) < conf
    sums = metrics.calibration_design(conf, corr).sum(axis=0)
    ece, mce = metrics.calibration_errors_from_sums(sums, np.float64(700))
    assert ece == pytest.approx(metrics.expected_calibration_error(conf, corr), abs=1e-12)
    assert mce == pytest.approx(metrics.max_calibration_error(conf, corr), abs=1e-12)
    # on a resample: the metric function applied to the resample's images
    c = metrics.resample_counts(700, 3, seed=1).numpy().astype(int)[2]
    ece_r, mce_r = metrics.calibration_errors_from_sums(
        (c[:, None] * metrics.calibration_design(conf, corr)).sum(axis=0), np.float64(700)
    )
    rc, rk = np.repeat(conf, c), np.repeat(corr, c)
    assert ece_r == pytest.approx(metrics.expected_calibration_error(rc, rk), abs=1e-12)
    assert mce_r == pytest.approx(metrics.max_calibration_error(rc, rk), abs=1e-12)
    fac = (rng.random((400, 16)) < 0.2).astype(float)
    hit = rng.random(400) < 0.7
    np.testing.assert_allclose(
        metrics.imagenet_x_statistics_from_sums(metrics.imagenet_x_design(hit, fac).sum(0)),
        metrics.imagenet_x_statistics(hit, fac),
        rtol=1e-12,
    )
    cats = np.array(metrics.CATEGORIES)
    d, s, t = (cats[rng.integers(0, 16, 300)] for _ in range(3))
    expected = metrics.shape_bias(d, s, t)
    np.testing.assert_allclose(
        metrics.shape_bias_from_sums(metrics.shape_bias_design(d, s, t).sum(0)),
        [expected[k] for k in metrics.SHAPE_BIAS_SUMMARIES],
        rtol=1e-12,
    )


def test_bootstrap_replicates_resample_rows_jointly() -> None:
    x = np.arange(1000, dtype=float)
    reps = metrics.bootstrap_replicates(lambda a, b: float(np.all(a == -b)), x, -x, n_boot=20)
    assert reps.shape == (20, 1) and np.all(reps == 1.0)
    vec = metrics.bootstrap_replicates(np.mean, x, n_boot=30, seed=2)
    loop = metrics.bootstrap_replicates(
        lambda a: a.mean(axis=-1), x, n_boot=30, seed=2, vectorized=True
    )
    np.testing.assert_allclose(vec, loop, rtol=1e-12)
    with pytest.raises(ValueError):
        metrics.bootstrap_replicates(np.mean, np.ones(3), np.ones(4))


# --------------------------------------------------------------------------- ImageNet-X


def _tiny_annotations() -> pd.DataFrame:
    rows = []
    for i, (cls, factor) in enumerate([(1, "pose"), (2, "pose"), (3, "background"), (4, "style")]):
        row = {"file_name": f"ILSVRC2012_val_{i + 1:08d}.JPEG", "class": cls}
        row.update({f: int(f == factor) for f in metrics.IMAGENET_X_FACTORS})
        rows.append(row)
    return pd.DataFrame(rows)


def test_factors_equal_package_factors() -> None:
    import imagenet_x

    assert tuple(imagenet_x.FACTORS) == metrics.IMAGENET_X_FACTORS


def _imagenet_x_rows(names: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """What production stores for these predictions: the ``imagenet_x`` evaluation's rows
    (the records hold only what it reads: file names and top-1 classes)."""
    from beyond_inet.records import ImageRecords
    from beyond_inet.scoring.evaluations import ScoringOptions
    from beyond_inet.scoring.evaluations import imagenet_x as imagenet_x_rows

    n = len(names)
    rec = ImageRecords(
        sample_id=np.asarray(names, dtype=object),
        label=np.asarray(pred),
        pred=np.asarray(pred),
        confidence=np.ones(n),
        p_true=np.ones(n),
        correct=np.ones(n, bool),
        topk_idx=np.zeros((n, 5), int),
        topk_prob=np.zeros((n, 5)),
        brier=np.zeros(n),
    )
    return {r.metric: r.value for r in imagenet_x_rows(rec, ScoringOptions(n_boot=0))}


def test_imagenet_x_rows_hand_case(monkeypatch: pytest.MonkeyPatch) -> None:
    ann = _tiny_annotations()
    monkeypatch.setattr(metrics, "load_imagenet_x_annotations", lambda: ann)
    names = np.array(
        [
            "/val/n0/ILSVRC2012_val_00000002.JPEG",
            "ILSVRC2012_val_00000001.JPEG",
            "ILSVRC2012_val_00000003.JPEG",
            "ILSVRC2012_val_00000099.JPEG",
        ]
    )
    pred = np.array([2, 7, 3, 5])  # last file is not annotated: ignored
    got = _imagenet_x_rows(names, pred)
    assert got["imagenet_x_images"] == 3
    assert got["factor_accuracy:pose"] == 0.5 and got["factor_accuracy:background"] == 1.0
    assert math.isnan(got["factor_accuracy:style"])
    assert (got["factor_count:pose"], got["factor_count:background"]) == (2, 1)
    assert got["factor_count:style"] == 0
    # overall accuracy 2/3: pose (1 - 0.5) / (1/3), background 0
    np.testing.assert_allclose(got["error_ratio:pose"], 1.5)
    assert got["error_ratio:background"] == 0.0
    np.testing.assert_allclose(got["error_ratio_mean"], 0.75)  # the factors with images


def test_imagenet_x_rejects_duplicates_and_ignores_unannotated_repeats() -> None:
    ann = _tiny_annotations()
    dup = np.array(["ILSVRC2012_val_00000001.JPEG", "x/ILSVRC2012_val_00000001.JPEG"])
    with pytest.raises(ValueError):
        metrics.align_imagenet_x(dup, ann)
    # repeated names that are not annotated (class folders of img0.JPEG ...) are ignored
    other = np.array(["n01/img0.JPEG", "n02/img0.JPEG", "ILSVRC2012_val_00000001.JPEG"])
    assert metrics.align_imagenet_x(other, ann).rows.tolist() == [2]


@pytest.fixture(scope="module")
def real_annotations() -> pd.DataFrame:
    return metrics.load_imagenet_x_annotations()


def _package_results(ann: pd.DataFrame, names: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    import imagenet_x

    preds = pd.DataFrame(
        {"file_name": names, "predicted_class": pred, "predicted_probability": 0.5}
    )
    augmented = imagenet_x.augment_model_predictions(ann, {"m": preds})
    acc = imagenet_x.compute_factor_accuracies(augmented, imagenet_x.FACTORS, "is_correct")
    return pd.concat([acc.loc["m"], imagenet_x.error_ratio(acc).loc["m"].add_prefix("ratio:")])


@pytest.mark.filterwarnings("ignore:Constructing a DataFrame from a list of sequences")
@pytest.mark.parametrize("n_files", [46110, 3000])
def test_imagenet_x_rows_match_imagenet_x_package(
    real_annotations: pd.DataFrame, n_files: int
) -> None:
    rng = np.random.default_rng(n_files)
    sub = real_annotations.sample(n=min(n_files, len(real_annotations)), random_state=n_files)
    labels = sub["class"].to_numpy()
    pred = np.where(rng.random(len(sub)) < 0.7, labels, rng.integers(0, 1000, len(sub)))
    names = sub["file_name"].to_numpy().astype(str)
    expected = _package_results(real_annotations, names, pred)

    # ours also gets unannotated files (must be ignored) and directory prefixes
    extra = np.array([f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(60001, 60101)])
    all_names = np.concatenate([np.char.add("val/some_dir/", names), extra])
    all_pred = np.concatenate([pred, np.zeros(len(extra), dtype=pred.dtype)])
    got = _imagenet_x_rows(all_names, all_pred)
    factors = list(metrics.IMAGENET_X_FACTORS)
    np.testing.assert_allclose(
        [got[f"factor_accuracy:{k}"] for k in factors], expected[factors], rtol=1e-12
    )
    np.testing.assert_allclose(
        [got[f"error_ratio:{k}"] for k in factors],
        expected[[f"ratio:{k}" for k in factors]],
        rtol=1e-12,
    )
    ratios = expected[[f"ratio:{k}" for k in factors]]
    np.testing.assert_allclose(got["error_ratio_mean"], ratios.mean())
    assert got["imagenet_x_images"] == len(sub)
    np.testing.assert_array_equal(
        [got[f"factor_count:{k}"] for k in factors], sub[factors].sum().to_numpy()
    )


def test_factor_vectors_batch_like_single(real_annotations: pd.DataFrame) -> None:
    names = real_annotations["file_name"].to_numpy()[:2000]
    aligned = metrics.align_imagenet_x(names)
    rng = np.random.default_rng(9)
    correct = rng.random((3, len(aligned.rows))) < 0.6
    batched = metrics.imagenet_x_error_ratio_vector(correct, aligned.factors[None])
    for b in range(3):
        single = metrics.imagenet_x_error_ratio_vector(correct[b], aligned.factors)
        np.testing.assert_allclose(batched[b], single)


# --------------------------------------------------------------------------- shape bias


def test_shape_bias_hand_case() -> None:
    shapes = np.array(["cat", "cat", "cat", "dog", "dog", "dog", "car"])
    textures = np.array(["dog", "car", "cat", "cat", "cat", "bird", "car"])
    decisions = np.array(["cat", "car", "dog", "cat", "knife", "dog", "car"])
    # kept (shape != texture): rows 0, 1, 3, 4, 5 -> shape hits 0, 5; texture hits 1, 3
    result = metrics.shape_bias(decisions, shapes, textures)
    assert result["shape_bias"] == 0.5
    assert result["shape_accuracy"] == 0.4 and result["texture_accuracy"] == 0.4
    assert result["shape_bias:cat"] == 0.5  # images whose SHAPE is cat: shape 0, texture 1
    assert result["shape_bias:dog"] == 0.5  # rows 3 (texture), 4 (neither), 5 (shape)
    assert math.isnan(result["shape_bias:car"])  # only its shape == texture image
    # over ALL 7 images (shape == texture ones too): rows 0, 5, 6 decided by shape
    assert result["accuracy_all_images"] == pytest.approx(3 / 7)
    assert set(result) == {
        "shape_bias",
        "shape_accuracy",
        "texture_accuracy",
        "accuracy_all_images",
    } | {f"shape_bias:{c}" for c in CATEGORIES}


def test_shape_bias_accepts_category_indices() -> None:
    names = np.array(["cat", "dog", "bird", "cat"])
    idx = np.array([CATEGORIES.index(n) for n in names])
    shapes = np.array(["cat", "cat", "bird", "dog"])
    textures = np.array(["dog", "dog", "cat", "cat"])
    by_name = metrics.shape_bias(names, shapes, textures)
    by_index = metrics.shape_bias(idx, shapes, textures)
    assert by_name == pytest.approx(by_index, nan_ok=True)
    assert by_name["shape_bias"] == 0.5  # rows 0, 2 follow the shape; rows 1, 3 the texture


def test_shape_bias_nan_without_cue_decisions() -> None:
    result = metrics.shape_bias(np.array(["oven"]), np.array(["cat"]), np.array(["dog"]))
    assert math.isnan(result["shape_bias"]) and result["shape_accuracy"] == 0.0
    empty = metrics.shape_bias(np.array(["cat"]), np.array(["cat"]), np.array(["cat"]))
    assert math.isnan(empty["shape_bias"]) and math.isnan(empty["shape_accuracy"])


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("deit3-21k", 0.3986),
        ("convnext-base-21k", 0.3330),
        ("vit-clip", 0.4647),
        ("convnext-clip", 0.4241),
    ],
)
def test_shape_bias_reproduces_authors_decisions(model: str, expected: float) -> None:
    # the paper's printed "accuracy (top-1) vs shape label" (all 1,280 images), data/published
    printed = {
        "deit3-21k": 0.32421875,
        "convnext-base-21k": 0.30546875,
        "vit-clip": 0.38984375,
        "convnext-clip": 0.29296875,
    }[model]
    path = DECISIONS_DIR / f"{model}.csv"
    if not path.is_file():
        pytest.skip(f"shared reference data not available: {path}")
    df = pd.read_csv(path)
    parsed = [parse_stimulus_name(n) for n in df["imagename"]]
    shapes = np.array([s for s, _ in parsed])
    textures = np.array([t for _, t in parsed])
    np.testing.assert_array_equal(shapes, df["category"].to_numpy().astype(str))
    result = metrics.shape_bias(df["object_response"].to_numpy(), shapes, textures)
    assert result["shape_bias"] == pytest.approx(expected, abs=5e-5)
    assert result["accuracy_all_images"] == pytest.approx(printed, abs=1e-12)
    df["texture"] = textures  # model-vs-human: per category = rows whose `category` (shape) is c
    for category, group in df[df["category"] != df["texture"]].groupby("category"):
        n_shape = (group["object_response"] == group["category"]).sum()
        n_texture = (group["object_response"] == group["texture"]).sum()
        assert result[f"shape_bias:{category}"] == pytest.approx(n_shape / (n_shape + n_texture))


def test_calibration_errors_of_a_batch_equal_each_set_alone() -> None:
    """The bootstrap scores [B, N] resamples in one call: each row equals the 1-D metric
    (which the torchmetrics oracle above checks) and the reliability table's gaps."""
    rng = np.random.default_rng(3)
    conf = rng.random((6, 200))
    conf[0, :5] = 1.0  # the extra bin
    correct = rng.random((6, 200)) < conf
    ece, mce = metrics.calibration_errors(conf, correct, 15)
    for i in range(6):
        table = metrics.calibration_bins(conf[i], correct[i], 15)
        w = table["count"] / table["count"].sum()
        assert ece[i] == pytest.approx(float(np.nansum(w * table["gap"].abs())), rel=1e-12)
        assert mce[i] == pytest.approx(float(table["gap"].abs().max()), rel=1e-12)
        assert metrics.expected_calibration_error(conf[i], correct[i]) == ece[i]
    nll = metrics.negative_log_likelihood(conf)
    assert nll.shape == (6,) and nll[2] == metrics.negative_log_likelihood(conf[2])
