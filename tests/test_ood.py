"""OOD detection: the metrics against scikit-learn, the OOD layouts, and precompute end to
end (an OOD set scored against the same model's ImageNet val run)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from beyond_inet.datasets import DATASETS, OOD_REPORT, Protocol, discover, role_datasets
from beyond_inet.scoring import ood
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import TINY_CLIP, TINY_TIMM, noise_image, write_flat_val


def _sklearn(in_dist: np.ndarray, out: np.ndarray, exact_fpr: bool = False) -> dict[str, float]:
    """The oracle: OpenOOD's evaluator written with scikit-learn (in-distribution = 1).
    FPR@95 is read off ``roc_curve`` (the first TPR >= 95%), which is OpenOOD's threshold
    when 95% of the in-distribution images is a whole number of distinct scores; else
    (``exact_fpr``) OpenOOD's rule by hand: OOD images strictly above the
    ``floor(0.95 n)``-th largest in-distribution score."""
    y = np.r_[np.ones(len(in_dist)), np.zeros(len(out))]
    s = np.r_[in_dist, out]
    fpr, tpr, _ = skm.roc_curve(y, s)
    p_in, r_in, _ = skm.precision_recall_curve(y, s)
    p_out, r_out, _ = skm.precision_recall_curve(1 - y, -s)
    kth = sorted(in_dist, reverse=True)[int(0.95 * len(in_dist)) - 1]
    return {
        "auroc": skm.roc_auc_score(y, s),
        "fpr95": float(np.mean(out > kth)) if exact_fpr else fpr[np.argmax(tpr >= 0.95)],
        "aupr_in": skm.auc(r_in, p_in),
        "aupr_out": skm.auc(r_out, p_out),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    in_dist, out = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.5, 300)  # continuous scores
    got, want = ood.detection(in_dist, out), _sklearn(in_dist, out)
    for name in ood.METRICS:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert 0.6 < got["auroc"] < 0.9  # a non-trivial case: the comparison can fail


def test_ties_count_half_and_the_curves_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    in_dist, out = np.round(rng.normal(1, 1, 200), 1), np.round(rng.normal(0, 1, 150), 1)
    got, want = ood.detection(in_dist, out), _sklearn(in_dist, out)
    for name in ("auroc", "aupr_in", "aupr_out"):
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert ood.auroc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5  # all tied: chance


def test_fpr95_is_openoods_threshold_by_hand() -> None:
    """floor(0.95 * 20) = 19 in-distribution scores kept: the threshold is the 19th largest
    (2.0); an OOD image counts when strictly above it."""
    in_dist = np.arange(1.0, 21.0)
    assert ood.fpr_at_tpr(in_dist, np.array([2.0, 2.5, 0.0])) == pytest.approx(1 / 3)
    assert ood.fpr_at_tpr(in_dist, np.array([25.0, 30.0])) == 1.0


def test_direction_and_edge_cases() -> None:
    separated = ood.detection(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0]))
    assert separated == {"auroc": 1.0, "fpr95": 0.0, "aupr_in": 1.0, "aupr_out": 1.0}
    reversed_ = ood.detection(np.array([1.0, 2.0]), np.array([5.0, 6.0]))
    assert reversed_["auroc"] == 0.0 and reversed_["fpr95"] == 1.0
    assert all(math.isnan(v) for v in ood.detection(np.array([]), np.array([1.0])).values())


def test_scores_leave_out_a_column_an_older_run_lacks() -> None:
    got = ood.scores_of(
        {"confidence": np.array([0.5, np.nan, 0.7]), "max_logit": None, "logsumexp": None}
    )
    assert list(got) == ["msp"] and got["msp"].tolist() == [0.5, 0.7]


# --------------------------------------------------------------------------- roles, layouts


def test_each_cross_dataset_evaluation_has_one_reference_dataset() -> None:
    assert role_datasets("temperature", "fit") == ["imagenet-val"]
    assert role_datasets("ood", "in-distribution") == ["imagenet-val"]
    assert role_datasets("ood", "out-of-distribution") == [
        "ood-ssb-hard",
        "ood-ninco",
        "ood-inaturalist",
        "ood-textures",
        "ood-openimage-o",
        "imagenet-o",
    ]
    assert "imagenet-r" in role_datasets("temperature", "apply")
    with pytest.raises(ValueError, match="neither 'in-distribution' nor"):
        Protocol(roles=(("ood", "apply"),))
    with pytest.raises(Exception, match=r"(?i)did you mean 'ood'"):
        Protocol(roles=(("odd", "in-distribution"),))


def test_every_ood_set_is_reported_in_one_group() -> None:
    assert [s.dataset for s in OOD_REPORT] == role_datasets("ood", "out-of-distribution")
    assert {s.group for s in OOD_REPORT} == {"near-OOD", "far-OOD", "ImageNet-O"}


def write_ood_images(folder: Path, n: int, seed: int) -> None:
    """``n`` noise JPEGs of several sizes in ``folder`` (an OOD set's images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        noise_image(rng, 40 + 3 * i, 52).save(folder / f"img{i}.jpg")


def test_layouts_take_the_part_of_the_archive_the_benchmark_uses(tmp_path: Path) -> None:
    write_ood_images(tmp_path / "ninco" / "NINCO_OOD_classes" / "caracal", 2, 0)
    write_ood_images(tmp_path / "ninco" / "NINCO_popular_datasets_subsamples" / "x", 3, 1)
    found = discover(DATASETS.get("ood-ninco"), tmp_path / "ninco")
    assert found is not None
    assert [s.sample_id for s in found.samples] == [
        "NINCO_OOD_classes/caracal/img0.jpg",
        "NINCO_OOD_classes/caracal/img1.jpg",
    ]
    write_ood_images(tmp_path / "textures" / "images" / "banded", 2, 2)
    (tmp_path / "textures" / "labels").mkdir()
    (tmp_path / "textures" / "labels" / "labels_joint_anno.txt").write_text("banded\n")
    found = discover(DATASETS.get("ood-textures"), tmp_path / "textures")
    assert found is not None and len(found.samples) == 2
    assert all(s.label == -1 for s in found.samples)
    write_ood_images(tmp_path / "o" / "n01443537", 2, 3)  # ImageNet-O: wnid folders, no labels used
    found = discover(DATASETS.get("imagenet-o"), tmp_path / "o")
    assert found is not None and {s.label for s in found.samples} == {-1}


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ood_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ood-data")
    write_flat_val(root / "imagenet" / "val", 12)
    write_ood_images(root / "ood" / "textures" / "images" / "banded", 5, 4)
    write_ood_images(root / "imagenet-o" / "n01443537", 4, 5)
    return root


def _run(root: Path, store: Path, *extra: str, models: str = f"{TINY_TIMM},{TINY_CLIP}") -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            [
                "--model",
                models,
                "--random-weights",
                "--data-root",
                str(root),
                "--store",
                str(store),
                "--workers",
                "0",
                "--quiet",
                "--bootstrap",
                "20",
                "--no-invariance",
                "--cache-dir",
                str(root / "cache"),  # the zero-shot head, built once
                *extra,
            ]
        )
    assert code == 0, err.getvalue()
    return err.getvalue()


def _scores(store: Store, model: str, dataset: str) -> dict[str, np.ndarray]:
    df = store.query(
        "SELECT p.confidence, p.max_logit, p.logsumexp FROM predictions p JOIN runs r "
        "USING (run_id) WHERE r.model = ? AND r.dataset = ? AND p.view = 'standard' "
        "ORDER BY r.finished_at DESC, p.sample_id",
        [model, dataset],
    )
    return {
        "msp": df["confidence"].to_numpy(float),
        "max_logit": df["max_logit"].to_numpy(float),
        "energy": df["logsumexp"].to_numpy(float),
    }


@pytest.fixture(scope="module")
def ood_store(ood_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny models on ImageNet val, Textures and ImageNet-O, by precompute."""
    store_path = tmp_path_factory.mktemp("ood-store") / "s.duckdb"
    _run(ood_root, store_path, "--dataset", "imagenet-val,ood-textures,imagenet-o")
    return store_path


def test_precompute_scores_each_ood_set_against_the_models_val_run(ood_store: Path) -> None:
    store = Store(ood_store)
    rows = store.query(
        "SELECT r.model, r.dataset, m.metric, m.value, r.settings FROM metrics m "
        "JOIN runs r USING (run_id) WHERE r.dataset IN ('ood-textures', 'imagenet-o')"
    )
    assert len(rows) == 2 * 2 * (4 * 3 + 1)  # models x sets x (4 metrics x 3 scores + count)
    for (model, dataset), g in rows.groupby(["model", "dataset"]):
        mine, theirs = _scores(store, model, dataset), _scores(store, model, "imagenet-val")
        assert len(theirs["msp"]) == 12 and not np.isnan(theirs["energy"]).any()
        got = dict(zip(g["metric"], g["value"], strict=True))
        assert got["ood_reference_images"] == 12
        for score in ood.SCORES:
            want = _sklearn(theirs[score], mine[score], exact_fpr=True)  # 12 images
            for name in ood.METRICS:
                assert got[f"{name}:{score}"] == pytest.approx(want[name], abs=1e-9)
        settings = json.loads(g["settings"].iloc[0])
        val_run = store.query(
            "SELECT run_id FROM runs WHERE model = ? AND dataset = 'imagenet-val'", [model]
        )["run_id"].iloc[0]
        assert settings["ood"]["in_distribution_run"] == val_run


def test_an_ood_set_waits_for_its_reference_and_follows_it(ood_root: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "s.duckdb"
    log = _run(ood_root, store_path, "--dataset", "imagenet-o", models=TINY_TIMM)
    assert "no imagenet-val run of timm:test_vit with OOD scores" in log
    count = "SELECT count(*) AS n FROM metrics WHERE dataset = 'imagenet-o'"
    assert Store(store_path).query(count)["n"].iloc[0] == 0
    _run(ood_root, store_path, "--dataset", "imagenet-val", models=TINY_TIMM)
    log = _run(ood_root, store_path, "--dataset", "imagenet-o", models=TINY_TIMM)  # from the store
    assert "skip" not in log  # the reference is part of the run's identity
    assert Store(store_path).query(count)["n"].iloc[0] == 13
    log = _run(ood_root, store_path, "--dataset", "imagenet-o", models=TINY_TIMM)
    assert "skip timm:test_vit on imagenet-o" in log


# --------------------------------------------------------------------------- dashboard


def test_the_ood_page_shows_what_precompute_stored(
    ood_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard import frames, queries

    store = Store(ood_store)
    stored = store.query(
        "SELECT r.model, r.dataset, m.metric, m.value FROM metrics m JOIN runs r USING (run_id) "
        "WHERE m.metric LIKE '%:energy'"
    )
    combined = queries.combined.uncached(
        str(ood_store), "v", "measured", (TINY_TIMM, TINY_CLIP), None, None
    )
    table = frames.ood_table(combined, "energy")
    got = table[table["dataset"] != ""]
    assert len(got) == len(stored) == 2 * 2 * 4  # models x sets x metrics
    want = {(r.model, r.dataset, r.metric.split(":")[0]): r.value for r in stored.itertuples()}
    for r in got.itertuples():
        assert r.value == want[(r.model, r.dataset, r.metric)]
    # far-OOD: Textures only, its mean is itself and says so; ImageNet-O has no group mean
    far = table[table["set"] == "far-OOD mean"]
    assert set(far["set"]) == {"far-OOD mean"} and len(far) == 2 * 4
    for r in far.itertuples():
        assert r.value == want[(r.model, "ood-textures", r.metric)]
    assert not (table["set"] == "near-OOD mean").any()
    assert frames.partial_means(table)[0].endswith("far-OOD mean: mean of 1 of 3 sets")
    wide = frames.ood_wide(table)
    assert list(wide["set"].unique()) == ["Textures", "ImageNet-O", "far-OOD mean"]
    assert list(wide["metric"][:4]) == list(frames.OOD_METRICS.values())

    # the histogram's scores: the OOD run's images and those of the val run it was scored on
    scores = queries.ood_scores.uncached(str(ood_store), "v", TINY_TIMM, "imagenet-o", "energy")
    mine = _scores(store, TINY_TIMM, "imagenet-o")
    theirs = _scores(store, TINY_TIMM, "imagenet-val")
    assert np.allclose(scores.loc[~scores["in_distribution"], "value"], mine["energy"])
    assert np.allclose(scores.loc[scores["in_distribution"], "value"], theirs["energy"])

    monkeypatch.setenv("BEYOND_INET_STORE", str(ood_store))
    app = Path(__file__).parents[1] / "dashboard" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=90)
    at.query_params["models"] = f"{TINY_TIMM},{TINY_CLIP}"
    at.run()
    at.switch_page("sections/ood.py")
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["OOD detection"]
    assert len(at.get("plotly_chart")) == 3 and len(at.dataframe) == 1
    at.radio(key="ood-score").set_value("msp").run()
    at.selectbox(key="ood-model").set_value(TINY_CLIP).run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
