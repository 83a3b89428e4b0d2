"""The dashboard: every page under AppTest against no store, published data only, a real
``precompute`` store of tiny random models and a synthetic store with every dataset; plus the
data-access layer (SQL calibration bins, explorer filters, safe image paths) and the pure
frame functions."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from beyond_inet import settings
from beyond_inet.records import (
    PREDICTION_SCHEMA,
    ImageRecords,
    MetricRow,
    metrics_frame,
    to_arrow,
)
from beyond_inet.scoring import metrics as M
from beyond_inet.store import Store
from dashboard import figures, frames, published, queries, synthetic
from dashboard import pages as dashboard_pages
from tests.conftest import REPO, TINY_CLIP, TINY_TIMM, run_record

APP = str(REPO / "dashboard" / "app.py")
# page stem -> title (the live page has its own tests: it loads models)
PAGES = {p.stem: p.title for p in dashboard_pages.PAGES if p.stem != "live_inference"}
# pages with published numbers: they chart even without a store
PUBLISHED_CHARTS = {
    "finder",
    "overview",
    "calibration",
    "shape_bias",
    "robustness",
    "transfer",
    "reproduction",
}
SYN_MODELS = ("deit3_21k", "vit_clip")
SYN_RANDOM = ("timm:test_vit",)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def precompute_store(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store filled by a real ``python -m precompute`` run of two tiny random models."""
    from precompute.cli import main

    store = tmp_path_factory.mktemp("dash_pre") / "results.duckdb"
    assert (
        main(
            [
                "--model",
                f"{TINY_TIMM},{TINY_CLIP}",
                "--random-weights",
                "--data-root",
                str(data_root),
                "--store",
                str(store),
                "--workers",
                "0",
                "--quiet",
                "--bootstrap",
                "20",
            ]
        )
        == 0
    )
    return store


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset, view and metric the dashboard knows (synthetic numbers), two paper
    models plus one random-weights model; a few real images under the recorded roots."""
    d = tmp_path_factory.mktemp("dash_syn")
    store = d / "syn.duckdb"
    synthetic.fill_store(
        store,
        scale=0.002,
        models=SYN_MODELS,
        random_models=SYN_RANDOM,
        data_root=d / "datasets",
        write_images=True,
        n_boot=20,
    )
    synthetic.fill_transfer(store, SYN_MODELS)
    synthetic.fill_own(store, (*SYN_MODELS, *SYN_RANDOM), d / "datasets", 20, write_images=True)
    synthetic.fill_cka(store, [("deit3_21k", "deit3_21k"), ("deit3_21k", "vit_clip")], layers=6)
    return store


def _app(
    monkeypatch: pytest.MonkeyPatch,
    store: Path,
    page: str | None = None,
    data_root: Path | None = None,
    **query: str,
) -> AppTest:
    monkeypatch.setenv("BEYOND_INET_STORE", str(store))
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(data_root or store.parent / "datasets"))
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page is not None:
        at.switch_page(f"sections/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


# --------------------------------------------------------------------------- pages


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_without_a_store_show_published_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str
) -> None:
    at = _app(monkeypatch, tmp_path / "absent.duckdb", page)
    assert [t.value for t in at.title] == [PAGES[page]]
    if page in PUBLISHED_CHARTS:
        assert _charts(at) >= 1 and len(at.dataframe) >= 1
        text = " ".join(c.value for c in at.caption)
        assert "published" in text.lower()
    else:
        assert at.info, "an empty page explains itself"
    # every page says how to get measured results (or what to select)
    notes = " ".join(i.value for i in at.info) + " ".join(c.value for c in at.caption)
    if page not in ("reproduction",):
        assert "precompute" in notes or "measured" in notes.lower()


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_on_a_synthetic_store_with_every_dataset(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path, page: str
) -> None:
    at = _app(monkeypatch, synthetic_store, page)
    assert [t.value for t in at.title] == [PAGES[page]]
    if page == "explorer":
        assert len(at.get("image")) >= 1  # thumbnails served from the recorded root
        assert "100 images match." in [c.value for c in at.caption]
        at.number_input(key="ex-page").set_value(5).run()
        full = [b for b in at.button if (b.key or "").startswith("ex-full-")]
        assert len(full) == 4  # the last page: 100 - 4 x 24
        at.checkbox(key="ex-disagree").check().run()  # fewer pages: back to the last one
        assert not at.exception
        n_pages = int(at.number_input(key="ex-page").label.split("of ")[1].rstrip(")"))
        assert at.number_input(key="ex-page").value == n_pages < 5
    elif page == "store_overview":
        assert len(at.dataframe) == 1 and "RANDOM" in at.warning[0].value
    else:
        assert _charts(at) >= 1 and len(at.dataframe) >= 1
        assert not at.info, [i.value for i in at.info]
        assert any("RANDOM" in w.value for w in at.warning)
    assert at.get("download_button"), "every table can be downloaded"


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_on_a_real_precompute_store(
    monkeypatch: pytest.MonkeyPatch, precompute_store: Path, page: str, data_root: Path
) -> None:
    at = _app(
        monkeypatch,
        precompute_store,
        page,
        data_root=data_root,
        source="measured",
        models=f"{TINY_TIMM},{TINY_CLIP}",
    )
    assert [t.value for t in at.title] == [PAGES[page]]
    charted = {"overview", "calibration", "imagenet_x", "shape_bias", "robustness"}
    if page in charted:
        assert _charts(at) >= 1
    if page in ("overview", "calibration", "imagenet_x", "shape_bias", "explorer"):
        assert any("RANDOM" in w.value for w in at.warning)
    if page == "explorer":
        n = len(at.get("image"))
        assert n >= 1
        at.button(key="ex-full-0").click().run()  # the full-size view opens on top
        assert not at.exception and len(at.get("image")) == n + 1
        assert at.button(key="ex-close")
        at.selectbox(key=f"ex-o-{TINY_TIMM}").set_value("correct").run()
        assert not at.exception and "0 images match." in [c.value for c in at.caption]


def test_overview_marks_random_models_and_highlights(
    monkeypatch: pytest.MonkeyPatch, precompute_store: Path
) -> None:
    at = _app(monkeypatch, precompute_store, "overview", source="both")
    table = at.dataframe[0].value
    rows = table["model"].tolist()
    assert f"{TINY_TIMM}{frames.RANDOM_MARK} (measured here)" in rows
    assert "deit3_21k (paper)" in rows
    assert "ImageNet top-1" in table.columns and "Shape bias" in table.columns


def test_selection_is_kept_in_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _app(
        monkeypatch,
        tmp_path / "none.duckdb",
        "overview",
        models="vit_clip,deit3_21k",
        source="published",
    )
    assert at.dataframe[0].value["model"].tolist() == ["deit3_21k", "vit_clip"]
    assert at.query_params["source"] == "published"
    at.sidebar.multiselect[0].set_value(["convnext_clip"]).run()
    assert at.query_params["models"] == "convnext_clip"
    assert at.dataframe[0].value["model"].tolist() == ["convnext_clip"]
    at.switch_page("sections/robustness.py").run()  # the selection follows across pages
    assert not at.exception
    wide = at.dataframe[0].value
    assert [c for c in wide.columns if c != "benchmark"] == ["convnext_clip (published)"]


def test_calibration_shows_the_stored_ece_and_rebins_with_the_library(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    """The ECE / MCE shown are the stored metrics; with another number of bins, the extra
    columns are the library's ECE / MCE of the stored predictions with those bins."""
    at = _app(monkeypatch, synthetic_store, "calibration", source="measured")
    table = at.dataframe[0].value
    assert not [c for c in table.columns if "bins)" in c]  # 15 bins: the stored numbers
    store = Store(synthetic_store)
    stored = store.query(
        "SELECT r.model, m.metric, m.value FROM metrics m JOIN runs r USING (run_id) WHERE "
        "m.dataset = 'imagenet-val' AND m.view = 'standard' AND m.metric IN ('ece', 'mce')"
    )
    preds = store.query(
        "SELECT r.model, p.confidence, p.correct FROM predictions p JOIN runs r USING "
        "(run_id) WHERE p.dataset = 'imagenet-val' AND p.view = 'standard' "
        "AND p.label IS NOT NULL"
    )
    rows = {m: table[table["model"].str.startswith(m)].iloc[0] for m in set(stored["model"])}
    assert len(rows) == len(SYN_MODELS) + len(SYN_RANDOM)
    for r in stored.itertuples():
        assert rows[r.model][r.metric.upper()] == f"{r.value:.3f}"
    at.slider(key="cal-bins").set_value(7).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "ECE (7 bins)" in table.columns and "MCE (7 bins)" in table.columns
    for model, g in preds.groupby("model"):
        conf, corr = g["confidence"].to_numpy(), g["correct"].to_numpy()
        row = table[table["model"].str.startswith(model)].iloc[0]
        assert row["ECE (7 bins)"] == f"{M.expected_calibration_error(conf, corr, 7):.3f}"
        assert row["MCE (7 bins)"] == f"{M.max_calibration_error(conf, corr, 7):.3f}"
    assert at.dataframe[-1].value["bin"].max() <= 7


def test_new_runs_appear_after_a_refresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = tmp_path / "grow.duckdb"
    plan = [synthetic.SyntheticDataset("cue-conflict", 40)]
    synthetic.fill_store(store, 1.0, models=("deit3_21k",), datasets=plan)
    at = _app(monkeypatch, store, "store_overview")
    assert at.dataframe[0].value["model"].tolist() == ["deit3_21k"]
    synthetic.fill_store(store, 1.0, models=("my_model",), datasets=plan)
    at.run()
    assert sorted(at.dataframe[0].value["model"]) == ["deit3_21k", "my_model"]


def test_a_locked_store_is_a_message_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = tmp_path / "locked.duckdb"
    synthetic.fill_store(
        store, 1.0, models=("deit3_21k",), datasets=[synthetic.SyntheticDataset("cue-conflict", 20)]
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()",
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(settings, "DASHBOARD_LOCK_WAIT_SECONDS", 0.2)
        at = _app(monkeypatch, store, "overview")
        assert any("busy" in w.value for w in at.sidebar.warning)
        assert "deit3_21k" in at.dataframe[0].value["model"].tolist()  # published still shows
    finally:
        holder.communicate("", timeout=30)
    at.run()
    assert not at.exception and not any("busy" in w.value for w in at.sidebar.warning)


def test_an_unreadable_store_is_a_message_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = tmp_path / "garbage.duckdb"
    store.write_bytes(b"this is not a database" * 1000)
    monkeypatch.setenv("BEYOND_INET_STORE", str(store))
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    assert "Cannot read the results store" in at.sidebar.error[0].value
    at.switch_page("sections/overview.py").run()
    assert not at.exception
    assert "deit3_21k" in at.dataframe[0].value["model"].tolist()


def test_the_page_list_is_every_section_file() -> None:
    files = {p.name for p in (REPO / "dashboard" / "sections").glob("*.py")} - {"__init__.py"}
    assert {p.file for p in dashboard_pages.PAGES} == files
    assert "live_inference" in {p.stem for p in dashboard_pages.PAGES}


# --------------------------------------------------------------------------- data access


def _prediction_store(
    path: Path, conf: np.ndarray, correct: np.ndarray, conf_ts: np.ndarray | None = None
) -> None:
    """One run of model ``m`` on imagenet-val with these per-image results and the
    calibration metrics ``precompute`` stores for them (its evaluation function)."""
    from beyond_inet.scoring.evaluations import ScoringOptions, calibration

    n = len(conf)
    rec = ImageRecords(
        sample_id=np.array([f"s{i}" for i in range(n)], dtype=object),
        label=np.zeros(n, np.int64),
        pred=np.where(correct, 0, 1),
        confidence=conf,
        p_true=conf,
        correct=correct,
        topk_idx=np.zeros((n, 1), np.int64),
        topk_prob=np.full((n, 1), 0.5),
        brier=np.zeros(n),
        confidence_ts=None if conf_ts is None else conf_ts,
        p_true_ts=None if conf_ts is None else conf_ts,
        brier_ts=None if conf_ts is None else np.zeros(n),
    )
    run = run_record(
        "r1",
        weights="w",
        random_weights=False,
        views="[]",
        n_samples=n,
        finished_at=pd.Timestamp("2026-01-01").to_pydatetime(),
    )
    scored = [("standard", r) for r in calibration(rec, ScoringOptions(n_boot=0))]
    Store(path).commit_run(
        run,
        to_arrow(rec, "r1", "m", "imagenet-val", "standard"),
        metrics_frame("r1", "m", "imagenet-val", scored),
    )


@pytest.mark.parametrize("n_bins", [1, 3, 10, 15, 33])
def test_calibration_bins_and_errors_are_the_library_functions(tmp_path: Path, n_bins: int) -> None:
    """The reliability bins the dashboard reads equal the library's (confidences on and
    just below every edge, 1.0 in its extra bin), raw and temperature-scaled; its ECE / MCE
    with any number of bins are the library's, and with 15 bins the stored metrics."""
    rng = np.random.default_rng(n_bins)
    edges = M.bin_edges(n_bins)
    conf = np.concatenate(
        [
            rng.random(3000).astype(np.float32),
            edges,
            np.nextafter(edges, np.float32(0)),
            [1.0, 1.0, 0.0],
        ]
    )
    conf = np.clip(conf, 0, 1).astype(np.float32)
    correct = rng.random(len(conf)) < conf
    conf_ts = rng.permutation(conf)  # the scaled confidences: other values, same edges
    _prediction_store(tmp_path / "c.duckdb", conf, correct, conf_ts)
    path = str(tmp_path / "c.duckdb")
    got = queries.calibration_table.uncached(
        path, "v", "imagenet-val", "standard", ("m",), n_bins
    ).set_index("bin")
    ref = M.calibration_bins(conf, correct, n_bins)
    ref = ref[ref["count"] > 0].set_index("bin")
    assert got.index.tolist() == ref.index.tolist()
    np.testing.assert_array_equal(got["count"], ref["count"])
    np.testing.assert_array_equal(got["n_correct"], ref["n_correct"])
    np.testing.assert_allclose(got["accuracy"], ref["accuracy"], rtol=1e-12)
    np.testing.assert_allclose(got["mean_confidence"], ref["mean_confidence"], rtol=1e-12)
    errors = queries.calibration_errors.uncached(
        path, "v", "imagenet-val", "standard", ("m",), n_bins
    ).iloc[0]
    assert errors["ece"] == M.expected_calibration_error(conf, correct, n_bins)
    assert errors["mce"] == M.max_calibration_error(conf, correct, n_bins)
    assert errors["n"] == len(conf)
    # the reliability bins give the same ECE (count-weighted mean gap) as the metric
    gap = (got["accuracy"] - got["mean_confidence"]).abs()
    assert float((gap * got["count"]).sum() / got["count"].sum()) == pytest.approx(
        errors["ece"], rel=1e-12
    )
    if n_bins == 15:  # the stored metrics are these numbers
        stored = queries.metrics.uncached(path, "v", ("imagenet-val",)).set_index("metric")
        assert errors["ece"] == stored.loc["ece", "value"]
        assert errors["mce"] == stored.loc["mce", "value"]
    scaled = queries.calibration_table.uncached(
        path, "v", "imagenet-val", "standard", ("m",), n_bins, scaled=True
    ).set_index("bin")
    ref = M.calibration_bins(conf_ts, correct, n_bins)
    ref = ref[ref["count"] > 0].set_index("bin")
    np.testing.assert_array_equal(scaled["count"], ref["count"])
    np.testing.assert_allclose(scaled["mean_confidence"], ref["mean_confidence"], rtol=1e-12)


def test_reliability_bins_hand_computed() -> None:
    """Four bins (float32 edges 0, .25, .5, .75, 1 are exact): each confidence's bin, the
    extra bin of 1.0, and ECE / MCE worked out by hand, per model."""
    per_image = pd.DataFrame(
        {
            "model": ["a"] * 8 + ["b"] * 2,
            "confidence": [0.1, 0.2, 0.25, 0.5, 0.74, 0.75, 0.99, 1.0, 0.3, 0.3],
            "correct": [True, False, True, True, False, True, True, False, True, True],
        }
    )
    bins = frames.reliability_bins(per_image, 4)
    a = bins[bins["model"] == "a"]
    assert a["bin"].tolist() == [0, 1, 2, 3, 4]  # 1.0: the extra bin 4
    assert a["count"].tolist() == [2, 1, 2, 2, 1]
    assert a["n_correct"].tolist() == [1, 1, 1, 2, 0]
    np.testing.assert_allclose(a["accuracy"], [0.5, 1.0, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(a["mean_confidence"], [0.15, 0.25, 0.62, 0.87, 1.0], rtol=1e-7)
    b = bins[bins["model"] == "b"]
    assert b["bin"].tolist() == [1] and b["count"].tolist() == [2]
    # ECE = (2 * .35 + 1 * .75 + 2 * .12 + 2 * .13 + 1 * 1.0) / 8; MCE = the 1.0 bin's gap
    errors = frames.binned_errors(per_image, 4).set_index("model")
    assert errors.loc["a", "ece"] == pytest.approx(2.95 / 8, rel=1e-6)
    assert errors.loc["a", "mce"] == pytest.approx(1.0)
    assert errors.loc["b", "ece"] == pytest.approx(0.7, rel=1e-6)
    assert errors.loc["a", "n"] == 8 and errors.loc["b", "n"] == 2
    assert frames.reliability_bins(per_image.iloc[:0], 4).columns.tolist() == frames.BIN_COLUMNS


def _preds(store: Path, dataset: str = "imagenet-val") -> pd.DataFrame:
    return Store(store).query(
        "SELECT * FROM predictions WHERE dataset = ? AND view = 'standard'", [dataset]
    )


def test_explorer_filters(synthetic_store: Path) -> None:
    path, v = str(synthetic_store), queries.store_version(synthetic_store)
    p = _preds(synthetic_store)
    wide = p.pivot(index="sample_id", columns="model", values="correct")
    preds = p.pivot(index="sample_id", columns="model", values="pred")
    labels = p.groupby("sample_id")["label"].first()
    a, b = SYN_MODELS
    page = queries.explorer_page
    total, ids = page(
        path, v, "imagenet-val", "standard", (a, b), ((a, "correct"), (b, "wrong")), page_size=1000
    )
    expected = sorted(wide.index[wide[a] & ~wide[b]])
    assert total == len(expected) and ids == expected
    total, ids = page(path, v, "imagenet-val", "standard", (a, b), disagree=True, page_size=1000)
    assert ids == sorted(preds.index[preds[a] != preds[b]])
    lab = int(labels.iloc[0])
    total, ids = page(path, v, "imagenet-val", "standard", (a,), label=lab, page_size=1000)
    assert ids == sorted(labels.index[labels == lab])
    files = queries.file_names_with_factor("pose")
    total, ids = page(path, v, "imagenet-val", "standard", (a,), factor="pose", page_size=1000)
    assert ids == sorted(set(labels.index) & set(files)) and 0 < total < len(labels)
    total, first = page(path, v, "imagenet-val", "standard", (a,), page=0, page_size=7)
    _, second = page(path, v, "imagenet-val", "standard", (a,), page=1, page_size=7)
    assert total == len(labels) and len(first) == 7 and first + second == sorted(labels.index)[:14]
    det = queries.explorer_details(path, v, "imagenet-val", "standard", (a, b), tuple(first[:2]))
    assert len(det) == 4 and det["topk_idx"].map(len).eq(5).all()
    total, grid = queries.explorer_grid.uncached(
        path, v, "imagenet-val", "standard", (a, b), page=1, page_size=7
    )
    assert total == len(labels) and grid["sample_id"].unique().tolist() == second
    assert queries.explorer_page(path, v, "imagenet-val", "standard", (a,), page=99) == (
        len(labels),
        [],
    )


def test_safe_image_path_rejects_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "a.png").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", root / "link.png")
    roots = [str(root)]
    assert queries.safe_image_path(roots, "cls/a.png") == (root / "cls" / "a.png").resolve()
    for bad in (
        "../secret.txt",
        "cls/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "link.png",
        "",
        "cls",
        "missing.png",
        "a\x00b",
        "x" * 300 + ".png",  # longer than a file name may be: OSError from the filesystem
        "cls/" + "é" * 200 + ".png",
    ):
        assert queries.safe_image_path(roots, bad) is None, bad
    assert queries.safe_image_path([], "cls/a.png") is None


def test_crafted_cue_conflict_ids_are_left_out_not_a_crash() -> None:
    ids = np.array(["cat/cat1-dog2.png", "../../etc/passwd", "cat/cat2-unicorn1.png"], object)
    rows, (shapes, textures) = frames._cue_conflict_cues(ids)
    assert rows.tolist() == [0] and shapes.tolist() == ["cat"] and textures.tolist() == ["dog"]
    decision = pd.DataFrame({"a": ["cat", "dog", "cat"], "b": ["dog", "dog", "cat"]}, index=ids)
    p = frames.paired_p_values(
        frames.PAIRED_TESTS["Shape bias"], {"decision": decision}, "a", ["b"]
    )
    assert len(p) == 1  # a p-value from the one stimulus, no exception


def test_metrics_query_reads_only_the_latest_run(tmp_path: Path) -> None:
    store = tmp_path / "twice.duckdb"
    plan = [synthetic.SyntheticDataset("cue-conflict", 30)]
    synthetic.fill_store(store, 1.0, models=("m",), datasets=plan, seed=1)
    first = queries.latest_runs.uncached(str(store), "")
    run, preds, mets, _ = synthetic._run("m", plan[0], 1.0, 5, False, Path("/x"))
    Store(store).commit_run(dataclasses.replace(run, run_key="other"), preds, mets)
    m = queries.metrics.uncached(str(store), "", None)
    assert set(m["run_id"]) == {run.run_id} != set(first["run_id"])
    assert len(queries.all_runs.uncached(str(store), "")) == 2


# --------------------------------------------------------------------------- pure frames


def test_published_numbers_map_to_store_keys() -> None:
    rows = published.published_rows()
    assert rows["provenance"].isin(["printed", "derived"]).all() and rows["source"].notna().all()
    unmapped = rows[rows["dataset"].isna()]
    assert set(unmapped["property"]) == {"models"}
    vtab = rows[rows["property"] == "transferability"]
    assert len(vtab) == 4 * 20 and vtab["dataset"].str.startswith("vtab").all()
    assert set(unmapped[unmapped["property"] == "models"]["published_metric"]) == {
        "FLOPs",
        "#params",
    }
    paper = tuple(rows["model"].unique())
    pm = queries.published_for(paper).set_index(["model", "dataset", "metric"])
    assert pm.loc[("deit3_21k", "imagenet-val", "top1"), "value"] == pytest.approx(0.855)
    assert pm.loc[("vit_clip", "imagenet-val", "ece"), "value"] == pytest.approx(0.1331)
    assert pm.loc[("convnext_clip", "cue-conflict", "shape_bias"), "value"] == pytest.approx(0.4241)
    assert pm.loc[("convnext_clip", "vtab-dsprites-ori", "top1"), "value"] == pytest.approx(
        float(
            rows[
                (rows["model"] == "convnext_clip") & (rows["published_dataset"] == "VTAB: dSpr-Ori")
            ]["published_value"].iloc[0]
        )
        / 100
    )
    # the group means: the mean of the paper's per-task numbers (hand-computed from the CSV)
    deit = rows[(rows["model"] == "deit3_21k") & (rows["property"] == "transferability")]
    structured = [
        "Clevr-Count", "Clevr-Dist", "DMLAB", "KITTI-Dist", "dSpr-Loc", "dSpr-Ori",
        "sNORB-Azim", "sNORB-Elev",
    ]  # fmt: skip
    want = deit[deit["published_dataset"].isin([f"VTAB: {t}" for t in structured])]
    assert len(want) == 8
    assert pm.loc[("deit3_21k", "vtab", "top1_structured"), "value"] == pytest.approx(
        want["published_value"].mean() / 100
    )
    assert pm.loc[("deit3_21k", "vtab", "top1_structured"), "detail"] == "mean of 8 of 8 tasks"
    assert pm.loc[("deit3_21k", "vtab", "top1_vtab"), "value"] == pytest.approx(0.678)  # printed
    assert not pm.index.duplicated().any()
    assert published.human_shape_bias()["shape_bias"].mean() == pytest.approx(0.95759)


def _derived(tmp_path: Path, measured: pd.DataFrame) -> pd.DataFrame:
    """Store ``measured`` (long metric rows) as runs and read them back with the summaries
    the dashboard derives."""
    store = Store(tmp_path / "m.duckdb")
    for i, ((model, dataset), g) in enumerate(measured.groupby(["model", "dataset"])):
        rows = [
            (v, MetricRow(m, x)) for v, m, x in zip(g["view"], g["metric"], g["value"], strict=True)
        ]
        run = run_record(
            f"r{i}",
            model=model,
            dataset=dataset,
            random_weights=bool(g["random_weights"].any()),
            finished_at=pd.Timestamp("2026-01-01").to_pydatetime(),
        )
        store.commit_run(
            run, PREDICTION_SCHEMA.empty_table(), metrics_frame(f"r{i}", model, dataset, rows)
        )
    path = str(store.path)
    return queries.metrics.uncached(path, queries.store_version(path), None, True)


def test_derived_robustness_average_matches_the_paper(tmp_path: Path) -> None:
    """Feeding the paper's seven benchmark numbers as 'measured' reproduces its average."""
    pm = published.published_metrics()
    bench = pm[pm["metric"] != "top1_average"].assign(random_weights=False)
    derived = _derived(tmp_path, bench)
    avg = derived[derived["metric"] == "top1_average"].set_index("model")["value"]
    paper = pm[pm["metric"] == "top1_average"].set_index("model")["value"]
    for model in paper.index:
        assert avg[model] == pytest.approx(paper[model], abs=0.0006), model


def test_imagenet_c_mean_and_invariance_summaries(tmp_path: Path) -> None:
    rows = [("m", "imagenet-c", f"fog:{s}", "top1", 0.1 * s) for s in range(1, 6)]
    rows += [
        ("m", "imagenet-val", "scale:2", "agreement", 0.5),
        ("m", "imagenet-val", "shift:5", "agreement", 0.7),
        ("m", "pug-imagenet", "Worlds", "top1", 0.2),
        ("m", "pug-imagenet", "Camera_Yaw", "top1", 0.4),
    ]
    df = pd.DataFrame(rows, columns=["model", "dataset", "view", "metric", "value"]).assign(
        random_weights=True
    )
    derived = _derived(tmp_path, df)
    d = derived[derived["view"] == "standard"].set_index(["dataset", "metric"])
    assert d.loc[("imagenet-c", "top1"), "value"] == pytest.approx(0.3)  # the mean as `standard`
    assert d.loc[("imagenet-c", "top1"), "detail"] == "mean of 5 views"
    assert d.loc[("robustness", "top1_average"), "value"] == pytest.approx(0.3)
    assert d.loc[("robustness", "top1_average"), "detail"].startswith(
        "mean of 1 of 7 benchmarks (no ImageNet-V2, ImageNet-ReaL,"
    )
    assert d.loc[("invariance", "agreement_mean"), "value"] == pytest.approx(0.6)
    assert d.loc[("pug-imagenet", "top1_mean"), "value"] == pytest.approx(0.3)
    comb = frames.combine(derived, pd.DataFrame(), "measured")
    assert comb["display"].str.endswith(frames.RANDOM_MARK).all()


def test_overview_with_catalogue_models_keeps_every_property_and_names_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The issue's case: catalogue models join the paper's. No weight resets to 0; the
    models without a property are listed as missing it, with each property's coverage;
    each row names its source; the catalogue's robustness average is there, marked as over
    5 of the 7 benchmarks; the same weights under two names are said to be one."""
    extra = "timm:convnext_base.fb_in22k_ft_in1k,open_clip:ViT-B-32:laion2b_s34b_b79k"
    models = f"deit3_21k,convnext_base_21k,vit_clip,convnext_clip,{extra}"
    at = _app(monkeypatch, tmp_path / "absent.duckdb", "overview", models=models)
    rows = at.dataframe[0].value["model"].tolist()
    assert "convnext_base_21k (paper)" in rows
    assert "timm:convnext_base.fb_in22k_ft_in1k (timm)" in rows
    assert "open_clip:ViT-B-32:laion2b_s34b_b79k (open_clip)" in rows
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["timm:convnext_base.fb_in22k_ft_in1k (timm)", "Robustness avg"].endswith(
        "(5/7)"
    )
    assert all(at.slider(key=f"w-{t}").value == 1 for t in ("ECE", "Shape bias"))
    captions = " ".join(c.value for c in at.caption)
    assert "ECE: 4 of 6" in captions and "Same weights under two names" in captions
    missing = " ".join(c.value for c in at.caption if c.value.startswith("Not ranked"))
    assert "missing: ECE" in missing and "timm:convnext_base.fb_in22k_ft_in1k" in missing
    assert "Robustness avg" in missing  # a 5-of-7 average is not ranked against full ones


def test_many_models_get_horizontal_bars_with_distinct_colours() -> None:
    """With 8 models (12 series) the Robustness chart turns horizontal, its height grows
    with the bars, the legend sits above the plot, and every model has its own colour (the
    measured and published bars of one model share it)."""
    names = [f"model-{i}" for i in range(8)]
    rows = [
        {"benchmark": b, "display": n, "source": src, "value": 0.5, "ci_low": None, "ci_high": None}
        for b in ("ImageNet val", "ImageNet-A")
        for n in names
        for src in (("measured", "published") if n < "model-4" else ("published",))
    ]
    fig = figures.grouped_bars(pd.DataFrame(rows), "benchmark", "t", "top-1 (%)", percent=True)
    assert all(t.orientation == "h" for t in fig.data)
    assert fig.layout.height > 500 and fig.layout.legend.orientation == "h"
    colours = {t.name.split(",")[0]: t.marker.color for t in fig.data}
    assert len(set(colours.values())) == 8
    few = figures.grouped_bars(pd.DataFrame(rows[:4]), "benchmark", "t", "top-1 (%)")
    assert all(t.orientation in (None, "v") for t in few.data)


def test_overview_best_and_ranking() -> None:
    rows = [
        ("a", "imagenet-val", "top1", 0.8),
        ("b", "imagenet-val", "top1", 0.7),
        ("a", "imagenet-val", "ece", 0.10),
        ("b", "imagenet-val", "ece", 0.02),
        ("c", "imagenet-val", "top1", 0.75),
    ]
    df = pd.DataFrame(rows, columns=["model", "dataset", "metric", "value"]).assign(
        view="standard", ci_low=np.nan, ci_high=np.nan, random_weights=False
    )
    comb = frames.combine(df, pd.DataFrame(), "measured")
    num, text = frames.overview(comb)
    assert list(num.columns[5:]) == ["ImageNet top-1", "ECE"]
    mask = frames.best_mask(num[["ImageNet top-1", "ECE"]])
    assert mask.loc["a", "ImageNet top-1"] and mask.loc["b", "ECE"] and not mask.loc["a", "ECE"]
    assert text.loc["a", "ImageNet top-1"] == "80.0" and text.loc["c", "ECE"] == "—"
    props = num[["ImageNet top-1", "ECE", "random_weights"]]
    r, left = frames.ranking(props, {"ImageNet top-1": 1, "ECE": 0})
    # accuracy on its own 0-1 scale, not min-max of the rows shown
    assert r.index.tolist() == ["a", "c", "b"]
    np.testing.assert_allclose(r["score"], [0.8, 0.75, 0.7])
    r, left = frames.ranking(props, {"ImageNet top-1": 1, "ECE": 3})
    # ECE on 0 .. the largest shown (0.10), lower is better: a 0.0, b 0.8
    assert r.loc["b", "score"] == pytest.approx((0.7 + 3 * 0.8) / 4)
    assert r.loc["a", "score"] == pytest.approx((0.8 + 3 * 0.0) / 4)
    assert "c" not in r.index and "missing: ECE" in left.loc["c", "reason"]
    assert frames.ranking(props, {"ECE": 0})[0]["score"].isna().all()
    assert frames.format_value(0.8531, 0.85, 0.857, True) == "85.3 [85.0, 85.7]"


def test_ranking_never_lets_a_random_or_partial_model_win() -> None:
    """The issue's case: a random-weights model measured on one property must not rank
    above real models measured on four; close shape biases stay close."""
    rows = []
    for m, top1, ece, sb in (("real_a", 0.85, 0.05, 0.333), ("real_b", 0.84, 0.06, 0.399)):
        rows += [
            (m, "imagenet-val", "top1", top1, False),
            (m, "imagenet-val", "ece", ece, False),
            (m, "cue-conflict", "shape_bias", sb, False),
        ]
    rows += [("timm:test_vit", "cue-conflict", "shape_bias", 0.99, True)]
    df = pd.DataFrame(rows, columns=["model", "dataset", "metric", "value", "random_weights"])
    comb = frames.combine(
        df.assign(view="standard", ci_low=np.nan, ci_high=np.nan), pd.DataFrame(), "measured"
    )
    num, _ = frames.overview(comb)
    cols = ["ImageNet top-1", "ECE", "Shape bias", "random_weights"]
    norm = frames.normalised(num[cols[:-1]])
    assert norm.loc["real_a", "Shape bias"] == pytest.approx(0.333)
    assert norm.loc["real_b", "Shape bias"] == pytest.approx(0.399)
    rank, left = frames.ranking(num[cols], {"Shape bias": 1, "ImageNet top-1": 1})
    assert rank.index.tolist() == ["real_b", "real_a"]
    random_row = next(i for i in num.index if i.startswith("timm:test_vit"))
    assert "random weights" in left.loc[random_row, "reason"]
    rank, left = frames.ranking(
        num[cols], {"Shape bias": 1, "ImageNet top-1": 1}, include_random=True
    )
    assert (
        random_row not in rank.index and "missing: ImageNet top-1" in left.loc[random_row, "reason"]
    )
    rank, _ = frames.ranking(num[cols], {"Shape bias": 1}, include_random=True)
    assert rank.index[0] == random_row  # only when asked for, and measured on what counts


def test_reproduction_differences() -> None:
    df = pd.DataFrame(
        [("deit3_21k", "imagenet-val", "standard", "top1", 0.85)],
        columns=["model", "dataset", "view", "metric", "value"],
    ).assign(ci_low=np.nan, ci_high=np.nan, random_weights=False)
    comb = frames.combine(df, published.published_metrics(), "both")
    rep = frames.reproduction(comb, published.published_rows())
    r = rep[
        (rep["model"] == "deit3_21k")
        & (rep["metric"] == "top-1 accuracy")
        & (rep["dataset"] == "ImageNet-1K val (INet-Val)")
    ].iloc[0]
    assert r["measured"] == pytest.approx(85.0) and r["difference"] == pytest.approx(-0.5)
    assert rep[rep["measured"].notna()]["model"].unique().tolist() == ["deit3_21k"]


def test_sql_summaries_of_the_synthetic_store(synthetic_store: Path) -> None:
    """Every derived row is the mean of the stored rows it summarises (a pandas oracle)."""
    path, v = str(synthetic_store), queries.store_version(synthetic_store)
    raw = queries.metrics.uncached(path, v, None, False)
    sql = queries.metrics.uncached(path, v, None, True)
    extra = sql[sql["detail"].notna()].set_index(["model", "dataset", "metric"])
    for model in SYN_MODELS:
        m = raw[raw["model"] == model]
        inv = m[(m["metric"] == "agreement") & m["view"].str.match(r"(scale|shift|resolution):")]
        got = extra.loc[(model, "invariance", "agreement_mean")]
        assert got["value"] == pytest.approx(inv["value"].mean())
        assert got["detail"] == f"mean of {len(inv)} views"
        bench = []
        for _, dataset, metric in published.ROBUSTNESS_BENCHMARKS:
            b = m[(m["dataset"] == dataset) & (m["metric"] == metric)]
            std = b[b["view"] == "standard"]
            bench.append(std["value"].iloc[0] if len(std) else b["value"].mean())
        got = extra.loc[(model, "robustness", "top1_average")]
        assert got["value"] == pytest.approx(np.mean(bench))
        assert got["detail"] == f"mean of {len(bench)} of 7 benchmarks"  # all present
        pug = m[(m["dataset"] == "pug-imagenet") & (m["metric"] == "top1")]
        got = extra.loc[(model, "pug-imagenet", "top1_mean"), "value"]
        assert got == pytest.approx(pug["value"].mean())
    assert (sql["dataset"] == "robustness").sum() == len(SYN_MODELS) + len(SYN_RANDOM)
    assert len(sql) - len(raw) == len(extra)


def test_published_source_hides_measured_numbers(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    for page in [p for p in PAGES if p != "store_overview"]:  # Runs lists the store itself
        at = _app(monkeypatch, synthetic_store, page, source="published")
        assert [t.value for t in at.title] == [PAGES[page]]
        assert not [w for w in at.main.warning if "RANDOM" in w.value], page
        if page in PUBLISHED_CHARTS:
            assert _charts(at) >= 1, page


# --------------------------------------------------------------------------- one kind only

SINGLE_KIND = {
    "cue-conflict": synthetic.SyntheticDataset("cue-conflict", 40),
    "imagenet-c": synthetic.SyntheticDataset(
        "imagenet-c", 32, tuple(f"{c}:{s}" for c in synthetic.CORRUPTIONS[:3] for s in range(1, 6))
    ),
    "pug-imagenet": synthetic.SyntheticDataset("pug-imagenet", 32, synthetic.PUG_FACTORS[:3]),
}


def single_kind_store(root: Path, dataset: str) -> Path:
    """A store holding runs of one dataset only (as a newcomer's first store does)."""
    store = root / dataset / "s.duckdb"
    synthetic.fill_store(
        store,
        1.0,
        models=("deit3_21k", "vit_clip"),
        datasets=[SINGLE_KIND[dataset]],
        data_root=store.parent / "datasets",
        write_images=True,
    )
    return store


@pytest.fixture(scope="module")
def single_kind_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("single_kind")
    return {name: single_kind_store(d, name) for name in SINGLE_KIND}


@pytest.mark.parametrize("dataset", list(SINGLE_KIND))
def test_the_explorer_renders_on_a_store_of_one_dataset(
    monkeypatch: pytest.MonkeyPatch, single_kind_stores: dict[str, Path], dataset: str
) -> None:
    """Where such a store crashed (the Explorer on cue-conflict's missing labels); every
    page on such stores is rendered in the browser test."""
    at = _app(monkeypatch, single_kind_stores[dataset], "explorer", source="measured")
    assert len(at.get("image")) >= 1  # real pictures, from the configured data root
    at.button(key="ex-full-0").click().run()
    assert not at.exception and not at.error


def test_an_unreadable_image_is_a_placeholder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = single_kind_store(tmp_path, "cue-conflict")
    ids = Store(store).query("SELECT DISTINCT sample_id FROM predictions ORDER BY sample_id")
    first = store.parent / "datasets" / "cue-conflict" / ids["sample_id"].iloc[0]
    first.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    at = _app(monkeypatch, store, "explorer", source="measured")
    shown = " ".join(c.value for c in at.caption)
    assert "unreadable image file" in shown and len(at.get("image")) >= 1  # the others show
    for f in (store.parent / "datasets").rglob("*.png"):
        f.write_bytes(b"not an image")
    at = _app(monkeypatch, store, "shape_bias", source="measured")
    assert "unreadable image file" in " ".join(c.value for c in at.caption)


def test_images_are_served_only_from_the_configured_data_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "datasets"
    inside = allowed / "cue-conflict" / "cat"
    inside.mkdir(parents=True)
    (inside / "cat1-dog1.png").write_bytes(b"x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    roots = [str(allowed)]
    # a run recorded inside the data root, or found by the dataset's own folder name
    assert (
        queries.image_path(
            roots, "cue-conflict", [str(allowed / "cue-conflict")], "cat/cat1-dog1.png"
        )
        == (inside / "cat1-dog1.png").resolve()
    )
    assert (
        queries.image_path(roots, "cue-conflict", ["/moved/away"], "cat/cat1-dog1.png")
        == (inside / "cat1-dog1.png").resolve()
    )
    # a store naming "/" or another folder as its dataset root widens nothing
    for stored in ("/", str(outside)):
        assert queries.image_path(roots, "cue-conflict", [stored], "secret.png") is None
        assert (
            queries.image_path(roots, "cue-conflict", [stored], str(outside / "secret.png")) is None
        )
    assert queries.image_path(roots, "cue-conflict", ["/"], "etc/passwd") is None
    assert queries.image_path([], "cue-conflict", ["/"], "etc/passwd") is None


def test_the_dashboard_listens_on_localhost_by_default() -> None:
    code = (
        "from streamlit import config\nconfig.get_config_options(force_reparse=True)\n"
        "print(config.get_option('server.address'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == "localhost", out.stderr


def test_the_synthetic_store_follows_the_readmes_definitions(synthetic_store: Path) -> None:
    """Views equal to ``standard`` agree 100%; agreement falls as a view moves away; every
    stored number is the production metric of the stored rows; runs are marked meaningless."""
    s = Store(synthetic_store)
    runs = s.query("SELECT model, weights, random_weights FROM runs")
    assert runs["random_weights"].all()
    assert set(runs["weights"]) == {"synthetic", "random"}
    agree = s.query(
        "SELECT model, view, value FROM metrics WHERE dataset = 'imagenet-val' "
        "AND metric = 'agreement'"
    ).pivot(index="view", columns="model", values="value")
    for view in ("standard", "scale:1", "resolution:224"):
        assert (agree.loc[view] == 1.0).all(), view
    assert (agree.loc["scale:3"] < agree.loc["scale:1.25"]).all()
    assert (agree.loc["shift:100"] < agree.loc["shift:5"]).all()
    p = s.query(
        "SELECT p.correct, p.confidence FROM predictions p WHERE dataset = "
        "'imagenet-val' AND view = 'shift:30' AND model = 'vit_clip'"
    )
    got = s.query(
        "SELECT metric, value FROM metrics WHERE dataset = 'imagenet-val' AND "
        "view = 'shift:30' AND model = 'vit_clip'"
    ).set_index("metric")["value"]
    assert got["top1"] == pytest.approx(p["correct"].mean())
    ece = s.query(
        "SELECT value FROM metrics WHERE dataset = 'imagenet-val' AND view = "
        "'standard' AND model = 'vit_clip' AND metric = 'ece'"
    )["value"].iloc[0]
    std = s.query(
        "SELECT confidence, correct FROM predictions WHERE dataset = 'imagenet-val'"
        " AND view = 'standard' AND model = 'vit_clip'"
    )
    assert ece == pytest.approx(
        M.expected_calibration_error(std["confidence"].to_numpy(), std["correct"].to_numpy())
    )


def test_the_synthetic_cli_writes_pictures_and_says_how_to_open_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "demo.duckdb"
    assert synthetic.main(["--store", str(store), "--scale", "0.0001"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "demo-datasets"
    assert f"--store {store} --data-root {root}" in out
    ids = Store(store).query(
        "SELECT sample_id FROM predictions WHERE dataset = 'imagenet-val' "
        "AND view = 'standard' ORDER BY sample_id LIMIT 3"
    )["sample_id"]
    for sid in ids:
        assert (root / "imagenet" / "val" / sid).is_file()


# --------------------------------------------------------------------------- model finder


def _finder_count(at: AppTest) -> int:
    cap = next(c.value for c in at.caption if " models match." in c.value)
    return int(cap.split("**")[1].replace(",", ""))


def test_finder_works_offline_and_its_filters_narrow_the_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _app(monkeypatch, tmp_path / "absent.duckdb", "finder")
    total = _finder_count(at)
    assert total > 1_600 and len(at.dataframe[0].value) == total
    at.multiselect(key="mf-lib").set_value(["open_clip"]).run()
    assert _finder_count(at) == 121 and set(at.dataframe[0].value["library"]) == {"open_clip"}
    at.text_input(key="mf-text").set_value("convnext").run()
    shown = at.dataframe[0].value
    assert 0 < len(shown) < 121 and shown["name"].str.contains("convnext").all()
    at.radio(key="mf-kind").set_value("supervised").run()  # open_clip is all zero-shot
    assert not at.exception and any("No model matches" in i.value for i in at.info)


def test_finder_selection_names_sizes_licences_and_unknowns() -> None:
    """What a selection hands back (names from customdata, in the two forms a Plotly event
    can carry them), names with their evaluation size, the licence column, range filters
    that keep (or say they drop) models without the number, sorting by the axis."""
    from dashboard import finder

    df = finder.table()
    fig = figures.finder_scatter(
        df.head(50), "imagenet-val top1", "imagenet-r top1", "logit", np.zeros(50, bool)
    )
    points = [{"customdata": cd} for tr in fig.data for cd in (tr.customdata or ())]
    names = finder.selected_names(points)
    assert names and set(names) <= set(df["name"])  # names, not row numbers
    as_dict = [{"customdata": {"0": "timm:a", "1": 0.5}}, {"customdata": ["timm:a"]}, {}]
    assert finder.selected_names(as_dict) == ["timm:a"]
    two = df[df["name"] == "timm:convnext_base.fb_in22k_ft_in1k"]
    assert sorted(two["model"]) == [
        "timm:convnext_base.fb_in22k_ft_in1k @224",
        "timm:convnext_base.fb_in22k_ft_in1k @288",
    ]
    assert set(df.loc[df["library"] == "open_clip", "license"]) == {"unknown"}
    assert (df.loc[df["name"] == "timm:resnet50.tv_in1k", "license"] == "bsd-3-clause").all()
    fast = finder.Filters(throughput=(1000.0, float("inf")))
    kept = finder.apply_filters(df, fast)
    dropped = finder.apply_filters(df, dataclasses.replace(fast, keep_unknown=False))
    clip = (df["library"] == "open_clip").sum()
    assert (kept["library"] == "open_clip").sum() == clip  # no benchmark: kept as unknown
    assert (dropped["library"] == "open_clip").sum() == 0
    assert finder.unknown_counts(kept, fast)["throughput_gpu"] >= clip
    ordered = finder.sort_by(df, "imagenet-r top1")["imagenet-r top1"]
    assert ordered.dropna().is_monotonic_decreasing
    assert ordered.tail(int(ordered.isna().sum())).isna().all()  # unknown last
    assert finder.sort_by(df, "params_m")["params_m"].dropna().is_monotonic_increasing
    assert finder.coverage(df, "objectnet top1").startswith("objectnet top1 (")


def test_finder_logit_ticks_fit_the_data_range() -> None:
    wide = figures.logit_ticks(np.array([0.02, 0.5, 0.97]))
    assert 3 <= len(wide) <= 9 and wide[0] <= 2 and wide[-1] >= 96
    narrow = figures.logit_ticks(np.array([0.81, 0.835, 0.86]))
    assert len(narrow) >= 3 and narrow[0] <= 81 and narrow[-1] >= 86
    assert all(80 <= t <= 87 for t in narrow)


def test_finder_shortlist_joins_the_sidebar_and_shows_the_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = _app(monkeypatch, tmp_path / "absent.duckdb", "finder")
    pick = ["timm:resnet50.a1_in1k", "open_clip:ViT-B-32:laion2b_s34b_b79k"]
    at.multiselect(key="mf-pick").set_value(pick).run()
    code = at.code[0].value
    assert f"--fetch-weights --model {','.join(pick)}" in code
    assert f"python -m precompute --model {','.join(pick)}" in code
    assert f"--model {','.join(pick)} --preprocessing weights --own NAME=PATH" in code
    at.button(key="mf-compare").click().run()
    assert set(pick) <= set(at.session_state["sel_models"])
    qp = at.query_params["models"]
    assert set(pick) <= set((qp[0] if isinstance(qp, list) else qp).split(","))
    # their published (catalogue) numbers now show on the other pages
    at.switch_page("sections/robustness.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert any("timm:resnet50.a1_in1k" in c for c in table.columns)
    imagenet = table[table["benchmark"] == "ImageNet val"]
    col = next(c for c in table.columns if c.startswith("timm:resnet50.a1_in1k"))
    assert imagenet[col].iloc[0] == pytest.approx(80.1, abs=1.5)  # timm's published top-1


def test_testbed_models_join_the_finder_the_shortlist_and_the_overview(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """imagenet-testbed's own rows are in the finder (its library, its model types, its
    properties with their coverage); a testbed-only model on the shortlist gets no
    precompute command (it says why) but its published numbers reach the Overview, named
    by their source, with the robustness average over the benchmarks it has (C too; the
    testbed has no ReaL, which the mapped torchvision weights get from timm)."""
    at = _app(monkeypatch, tmp_path / "absent.duckdb", "finder")
    at.multiselect(key="mf-lib").set_value(["imagenet-testbed"]).run()
    assert _finder_count(at) == 241
    at.multiselect(key="mf-type").set_value(["Standard training"]).run()
    assert 0 < _finder_count(at) < 100
    assert "imagenet-c mean_ce" in at.selectbox(key="mf-y").options or any(
        "imagenet-c mean_ce" in o for o in at.selectbox(key="mf-y").options
    )
    at.multiselect(key="mf-type").set_value([]).run()
    at.multiselect(key="mf-lib").set_value([]).run()
    pick = ["imagenet-testbed:resnet50_augmix", "timm:resnet50.tv_in1k"]
    at.multiselect(key="mf-pick").set_value(pick).run()
    code = at.code[0].value
    assert "timm:resnet50.tv_in1k" in code and "resnet50_augmix" not in code
    assert any("resnet50_augmix" in c.value and "published" in c.value for c in at.caption)
    at.button(key="mf-compare").click().run()
    at.switch_page("sections/overview.py").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("model")
    augmix = table.loc["imagenet-testbed:resnet50_augmix (imagenet-testbed)"]
    assert augmix["Robustness avg"].endswith("(5/7)")
    assert table.loc["timm:resnet50.tv_in1k (timm)", "Robustness avg"].endswith("(6/7)")


def test_a_measured_catalogue_weight_sits_beside_its_published_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = tmp_path / "m.duckdb"
    synthetic.fill_store(
        store,
        1.0,
        models=("timm:test_vit.r160_in1k",),
        datasets=[synthetic.SyntheticDataset("imagenet-val", 40)],
    )
    measured = (
        Store(store)
        .query("SELECT value FROM metrics WHERE metric = 'top1' AND view = 'standard'")["value"]
        .iloc[0]
    )
    at = _app(monkeypatch, store, "finder")
    at.text_input(key="mf-text").set_value("test_vit.r160").run()
    row = at.dataframe[0].value.set_index("name").loc["timm:test_vit.r160_in1k"]
    assert row["measured imagenet-val top1"] == pytest.approx(measured)
    assert row["imagenet-val top1"] == pytest.approx(0.40982)  # timm's number, same row
    assert any("RANDOM" in w.value for w in at.warning)  # the measured run is synthetic


# --------------------------------------------------------------------------- transfer, CKA


def test_vtab_summaries_of_measured_tasks(tmp_path: Path) -> None:
    """Group means over the tasks present and the overall mean, against a hand computation."""
    measured = pd.DataFrame(
        [
            ("m", "vtab-cifar100", "standard", "top1", 0.8, False),
            ("m", "vtab-dtd", "standard", "top1", 0.6, False),
            ("m", "vtab-eurosat", "standard", "top1", 0.9, False),
            ("m", "vtab-dmlab", "standard", "top1", 0.4, False),
            ("m", "vtab-dtd", "standard", "probe_c", 100.0, False),  # not a top-1: ignored
        ],
        columns=["model", "dataset", "view", "metric", "value", "random_weights"],
    )
    d = _derived(tmp_path, measured)
    v = d[d["dataset"] == "vtab"].set_index("metric")
    assert v.loc["top1_natural", "value"] == pytest.approx(0.7)
    assert v.loc["top1_specialized", "value"] == pytest.approx(0.9)
    assert v.loc["top1_structured", "value"] == pytest.approx(0.4)
    assert v.loc["top1_vtab", "value"] == pytest.approx((0.8 + 0.6 + 0.9 + 0.4) / 4)
    assert v.loc["top1_natural", "detail"] == "mean of 2 of 7 tasks"
    assert v.loc["top1_vtab", "detail"] == "mean of 4 of 19 tasks"


def test_vtab_means_are_derived_the_same_way_from_either_source(tmp_path: Path) -> None:
    """The paper's per-task numbers, stored as measured runs, give the same group means
    (and details) as the published ones; the overall mean is the paper's printed average
    (to its rounding) and, for a subset of tasks without a printed one, the same both ways."""
    from beyond_inet.datasets.transfer import TASKS

    pub = published.published_metrics()
    tasks = pub[pub["dataset"].str.startswith("vtab-")].assign(random_weights=False)
    assert len(tasks) == 4 * len(TASKS)
    measured = _derived(tmp_path, tasks)
    keys = ["model", "metric"]
    got = measured[measured["dataset"] == "vtab"].set_index(keys).sort_index()
    want = queries.published_for(tuple(tasks["model"].unique()))
    want = want[want["dataset"] == "vtab"].set_index(keys).sort_index()
    groups = [m for m in frames.VTAB_SUMMARIES if m != "top1_vtab"]
    g, w = got[got.index.isin(groups, level=1)], want[want.index.isin(groups, level=1)]
    assert g.index.equals(w.index) and len(g) == 4 * 3
    np.testing.assert_allclose(g["value"], w["value"], rtol=1e-12)
    assert g["detail"].tolist() == w["detail"].tolist()
    printed = want.xs("top1_vtab", level=1)["value"]
    derived = got.xs("top1_vtab", level=1)["value"]
    np.testing.assert_allclose(derived, printed, atol=0.0006)  # the paper: one decimal in %
    # a subset of tasks (no printed average): every summary equal, from either source
    some = tasks[tasks["dataset"].isin(["vtab-dtd", "vtab-eurosat", "vtab-dmlab", "vtab-svhn"])]
    from_store = _derived(tmp_path / "some", some)
    a = from_store[from_store["dataset"] == "vtab"].set_index(keys).sort_index()
    b = frames.vtab_summaries(some).set_index(keys).sort_index()
    assert a.index.equals(b.index) and "top1_vtab" in a.index.get_level_values(1)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12)
    assert a["detail"].tolist() == b["detail"].tolist()
    assert set(b.xs("top1_vtab", level=1)["detail"]) == {f"mean of 4 of {len(TASKS)} tasks"}


def test_transfer_frames_and_gap() -> None:
    comb = pd.DataFrame(
        [
            ("a", "a", "measured", "vtab-dtd", "standard", "top1", 0.70),
            ("a", "a", "published", "vtab-dtd", "standard", "top1", 0.75),
            ("a", "a", "measured", "vtab-dmlab", "standard", "top1", 0.40),
            ("b", "b", "published", "vtab-dtd", "standard", "top1", 0.60),
            ("a", "a", "measured", "vtab", "standard", "top1_natural", 0.70),
            ("a", "a", "measured", "imagenet-val", "standard", "top1", 0.80),
        ],
        columns=["model", "display", "source", "dataset", "view", "metric", "value"],
    )
    tasks = frames.transfer_table(comb)
    assert set(tasks["task"]) == {"DTD", "DMLAB"} and len(tasks) == 4
    assert frames.transfer_groups(comb)["group"].tolist() == ["natural"]
    gap = frames.transfer_gap(tasks)
    assert gap[["model", "task", "gap (pp)"]].values.tolist() == [["a", "DTD", -5.0]]
    wide = frames.transfer_wide(tasks)
    assert list(wide["task"]) == ["DTD", "DMLAB"]  # natural before structured
    assert wide.loc[0, "a (measured)"] == pytest.approx(70.0)


def test_cka_queries_and_figures(synthetic_store: Path) -> None:
    path = str(synthetic_store)
    runs = queries.cka_runs.uncached(path, queries.store_version(path))
    assert len(runs) == 2 and runs["pair"].str.contains(" x ").all()
    self_run = runs[runs["model_b"] == "deit3_21k"].iloc[0]
    cells = queries.cka_cells.uncached(path, "", self_run["run_id"])
    m = cells.pivot(index="row", columns="col", values="cka").to_numpy()
    want = synthetic.synthetic_cka(6, 6, True)
    np.testing.assert_allclose(m, want, atol=1e-6)  # float32 in the store
    fig = figures.cka_heatmap(cells, "deit3_21k", "deit3_21k")
    assert list(fig.data[0].y) == [f"blocks.{i}" for i in range(6)]
    prof = figures.cka_diagonal(cells, "deit3_21k", "deit3_21k").data[0]
    np.testing.assert_allclose(prof.y, 1.0, atol=1e-6)
    # a 6 x 2 matrix keeps square cells: y is scaled to x, the axes shrink to the matrix
    strip = cells[cells["col"] < 2]
    lay = figures.cka_heatmap(strip, "a", "b").layout
    assert (lay.yaxis.scaleanchor, lay.yaxis.scaleratio) == ("x", 1)
    assert lay.xaxis.constrain == lay.yaxis.constrain == "domain"
    assert queries.cka_runs.uncached(str(synthetic_store.parent / "none.duckdb"), "").empty


# --------------------------------------------------------------------------- paired


def _stored_row(model_a: str, model_b: str, a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """The ``paired`` row ``precompute`` stores for two runs' correctness (its function)."""
    from beyond_inet.run.commit import RunSummary, paired_records
    from beyond_inet.scoring.evaluations import ScoringOptions

    runs = [
        RunSummary(model_a, "d", "done", run_id="ra", correct={"standard": a}),
        RunSummary(model_b, "d", "done", run_id="rb", correct={"standard": b}),
    ]
    (record,) = paired_records("d", runs, ScoringOptions(n_boot=200, seed=3))
    return pd.DataFrame([record.row()])[queries.PAIRED_COLUMNS]


def test_paired_summary_reads_the_stored_row_either_way_round() -> None:
    """The Compare page's numbers are the stored row's; asked the other way round, they are
    what ``precompute`` would have stored for (B, A): the library's own numbers."""
    from beyond_inet.scoring.paired import compare

    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 1, 0, 0, 0, 1, 1, 0], bool)
    stored = _stored_row("x", "y", a, b)
    s = frames.paired_summary(stored, "x")
    assert s is not None
    assert s["table"].to_numpy().tolist() == [[3, 2], [1, 2]]  # hand-counted
    assert (s["n"], s["accuracy_a"], s["accuracy_b"]) == (8, 5 / 8, 4 / 8)
    want = compare(a, b, 200, 3)
    assert s["p_value"] == want.test.p_value and s["kappa"] == want.kappa
    assert (s["diff"], *s["ci"]) == (want.diff, want.ci_low, want.ci_high)
    assert s["diff"] == pytest.approx(1 / 8) and s["n_boot"] == 200
    turned = frames.paired_summary(stored, "y")  # y as A
    assert turned is not None
    back = compare(b, a, 200, 3)
    assert turned["table"].to_numpy().tolist() == [[3, 1], [2, 2]]
    assert (turned["accuracy_a"], turned["accuracy_b"]) == (4 / 8, 5 / 8)
    assert turned["p_value"] == pytest.approx(back.test.p_value)
    assert turned["kappa"] == pytest.approx(back.kappa)
    assert turned["diff"] == pytest.approx(back.diff)
    assert turned["ci"] == pytest.approx((back.ci_low, back.ci_high))
    assert frames.paired_summary(stored.iloc[:0], "x") is None
    fig = figures.paired_difference(s, "x", "y")
    assert fig.data[-1].x[0] == pytest.approx(12.5)


def test_error_consistency_matrix() -> None:
    from beyond_inet.scoring.paired import error_consistency

    # models x models and models x humans, humans matched by the stimulus file name
    correct = pd.DataFrame(
        {"m1": [True, False, True, True], "m2": [True, False, False, True]},
        index=["cat/cat1-bear2.png", "cat/cat2-dog1.png", "dog/dog1-cat3.png", "x/unseen.png"],
    )
    humans = pd.DataFrame(
        {
            "subject": ["s1"] * 3,
            "image": ["cat1-bear2.png", "cat2-dog1.png", "dog1-cat3.png"],
            "correct": [True, True, False],
        }
    )
    ec = frames.error_consistency_matrix(correct, humans)
    assert list(ec.columns) == ["m1", "m2", "s1"]
    assert ec.loc["m1", "m1"] == pytest.approx(1.0)
    assert ec.loc["m1", "m2"] == pytest.approx(error_consistency(correct["m1"], correct["m2"]))
    want = error_consistency(np.array([True, False, True]), np.array([True, True, False]))
    assert ec.loc["m1", "s1"] == pytest.approx(want) or (
        np.isnan(want) and np.isnan(ec.loc["m1", "s1"])
    )


def test_human_trials_ship_with_the_project() -> None:
    h = published.human_trials()
    assert h["subject"].nunique() == 10 and len(h) == 12_800
    assert h["image"].str.match(r"^[a-z]+\d+-[a-z]+\d+\.png$").all()
    # the shipped shape biases are these trials' (non-excluded images, shape / (shape + texture))
    texture = h["image"].str.split("-").str[1].str.replace(r"\d+\.png$", "", regex=True)
    keep = h["shape"] != texture
    shape_hits = (h["response"] == h["shape"]) & keep
    texture_hits = (h["response"] == texture) & keep
    by_subject = shape_hits.groupby(h["subject"]).sum() / (
        shape_hits.groupby(h["subject"]).sum() + texture_hits.groupby(h["subject"]).sum()
    )
    assert by_subject.mean() == pytest.approx(
        published.human_shape_bias()["shape_bias"].mean(), abs=1e-3
    )


def test_not_significantly_worse_marks_with_holm() -> None:
    from beyond_inet.scoring.paired import holm, mcnemar_exact

    rng = np.random.default_rng(0)
    best = rng.random(400) < 0.80
    close = np.where(rng.random(400) < 0.95, best, ~best)  # nearly the same decisions
    worse = best & (rng.random(400) < 0.8)  # loses a fifth of best's hits
    correct = pd.DataFrame({"a": best, "b": close, "c": worse})
    num = pd.DataFrame(
        {
            "model": ["a", "b", "c", "a"],
            "source": ["measured"] * 3 + ["published"],
            "ImageNet top-1": [best.mean(), close.mean(), worse.mean(), 0.99],
        },
        index=["a (measured)", "b (measured)", "c (measured)", "a (published)"],
    )
    test = frames.PAIRED_TESTS["ImageNet top-1"]
    marks = frames.not_significantly_worse(
        num,
        "ImageNet top-1",
        lambda best, others: frames.paired_p_values(test, {"correct": correct}, best, others),
        0.05,
    )
    top = "a" if best.mean() >= close.mean() else "b"
    other = "b" if top == "a" else "a"
    p = holm(
        np.array(
            [
                mcnemar_exact(correct[top], correct[other]).p_value,
                mcnemar_exact(correct[top], worse).p_value,
            ]
        )
    )
    assert marks[f"{other} (measured)"] == bool(p[0] >= 0.05) and p[0] >= 0.05
    assert not marks["c (measured)"] and p[1] < 0.05
    assert not marks[f"{top} (measured)"] and not marks["a (published)"]


def test_not_significantly_worse_on_a_lower_is_better_column() -> None:
    """ECE: the best is the lowest; each other model's mark is its Holm-adjusted paired
    bootstrap p-value against the best (same images, same resamples); a model whose
    confidences are pushed to 1 is significantly worse."""
    from beyond_inet.scoring.paired import bootstrap_difference_p, holm

    rng = np.random.default_rng(1)
    n = 600
    calibrated = rng.uniform(0.3, 1.0, n)
    correct = rng.random(n) < calibrated  # right as often as it says
    jittered = np.clip(calibrated + rng.normal(0, 0.03, n), 0.01, 1.0)
    overconfident = np.clip(calibrated + 0.25, 0.01, 1.0)
    ids = [f"img{i}.png" for i in range(n)]
    conf = pd.DataFrame({"a": calibrated, "b": jittered, "c": overconfident}, index=ids)
    corr = pd.DataFrame({k: correct for k in "abc"}, index=ids)
    ece = {k: M.expected_calibration_error(conf[k].to_numpy(), correct, 15) for k in "abc"}
    num = pd.DataFrame(
        {"model": list("abc"), "source": ["measured"] * 3, "ECE": [ece[k] for k in "abc"]},
        index=list("abc"),
    )
    test = frames.PAIRED_TESTS["ECE"]
    values = {"confidence": conf, "correct": corr}
    marks = frames.not_significantly_worse(
        num, "ECE", lambda b, o: frames.paired_p_values(test, values, b, o, 300), 0.05
    )
    best = min("abc", key=ece.get)
    others = [k for k in "abc" if k != best]

    def ece_of(c: np.ndarray, k: np.ndarray) -> np.ndarray:
        return M.expected_calibration_error(c, k.astype(float), 15)

    p = holm(
        np.array(
            [
                bootstrap_difference_p(
                    ece_of,
                    (conf[best].to_numpy(), correct),
                    (conf[k].to_numpy(), correct),
                    300,
                    vectorized=True,
                )
                for k in others
            ]
        )
    )
    assert best != "c" and not marks[best] and not marks["c"]
    assert [marks[k] for k in others] == [bool(x >= 0.05) for x in p]


def test_invariance_relative_curves_and_areas() -> None:
    comb = pd.DataFrame(
        {
            "display": ["m"] * 4,
            "source": ["measured"] * 4,
            "metric": ["top1"] * 4,
            "view": ["standard", "scale:1", "scale:2", "scale:3"],
            "value": [0.8, 0.8, 0.6, 0.4],
            "ci_low": [np.nan] * 4,
            "ci_high": [np.nan] * 4,
        }
    )
    fam = frames.family_views(comb, ["scale"])
    rel = frames.relative_to_standard(fam, comb)
    np.testing.assert_allclose(rel["value"], [1.0, 0.75, 0.5])
    area = frames.curve_areas(rel)
    # trapezoid over x = 1, 2, 3: ((1 + .75) / 2 + (.75 + .5) / 2) / (3 - 1)
    assert area["area"].iloc[0] == pytest.approx(((1 + 0.75) / 2 + (0.75 + 0.5) / 2) / 2)


def test_invariance_relative_toggle_and_compare_page(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    at = _app(monkeypatch, synthetic_store, "invariance")
    at.toggle(key="inv-relative").set_value(True).run()
    assert not at.exception and _charts(at) >= 3
    areas = at.dataframe[0].value
    assert "scale top1" in areas.columns and areas["scale agreement"].max() <= 1.0
    at = _app(monkeypatch, synthetic_store, "compare")
    at.selectbox(key="cmp-dataset").set_value("imagenet-val").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.iloc[:, 1:].to_numpy().sum() == 100  # the 2x2 table covers every image
    a, b = at.selectbox(key="cmp-a").value, at.selectbox(key="cmp-b").value
    # the numbers shown are the stored row's (read, not recomputed)
    path = str(synthetic_store)
    row = queries.stored_paired.uncached(
        path, queries.store_version(path), a, b, "imagenet-val", "standard"
    ).iloc[0]
    flip = row["model_a"] != a
    only_a, only_b = (row["only_b"], row["only_a"]) if flip else (row["only_a"], row["only_b"])
    assert table.iloc[:, 1:].to_numpy().tolist() == [
        [row["both_right"], only_a],
        [only_b, row["both_wrong"]],
    ]
    said = " ".join(m.value for m in at.markdown)
    assert f"McNemar's exact test on {row['n_images']:,} images: p = {row['p_value']:.3g}" in said
    diff = -row["accuracy_diff"] if flip else row["accuracy_diff"]
    assert f"{100 * diff:+.2f} pp" in [m.value for m in at.metric]
    n_a = int(table.iloc[0, 2])  # A right, B wrong
    at.button(key="cmp-open-a").click().run()  # into the Explorer, filtered to those images
    assert not at.exception and [t.value for t in at.title] == ["Explorer"]
    assert at.selectbox(key=f"ex-o-{a}").value == "correct"
    assert at.selectbox(key=f"ex-o-{b}").value == "wrong"
    assert at.selectbox(key="ex-dataset").value == "imagenet-val"
    assert f"{n_a} images match." in [c.value for c in at.caption]


def test_compare_without_a_stored_comparison_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Runs stored separately (no ``paired`` row): the page says so and names the command
    that stores one, shows no statistic (nothing recomputed), still lists the images where
    exactly one model is right; once the row is stored, the page shows it."""
    store = tmp_path / "apart.duckdb"
    plan = [synthetic.SyntheticDataset("imagenet-val", 60)]
    for i, model in enumerate(SYN_MODELS):  # two invocations, as two precompute runs
        synthetic.fill_store(store, 1.0, models=(model,), datasets=plan, seed=i)
    at = _app(monkeypatch, store, "compare", source="measured", models=",".join(SYN_MODELS))
    info = " ".join(i.value for i in at.info)
    assert "No stored paired comparison" in info
    assert f"python -m precompute --model {SYN_MODELS[0]},{SYN_MODELS[1]}" in info
    assert not any("McNemar's exact test on" in m.value for m in at.markdown) and not at.metric
    assert not at.get("plotly_chart")
    assert any(s.value.startswith("Images where exactly one is right") for s in at.subheader)
    assert synthetic.fill_paired(store, n_boot=0) == 1  # what the next precompute of both stores
    at = _app(monkeypatch, store, "compare", source="measured", models=",".join(SYN_MODELS))
    assert not at.info and any("McNemar's exact test on" in m.value for m in at.markdown)
    assert "no interval: stored with `--bootstrap 0`" in [c.value for c in at.caption]


def test_compare_on_a_real_precompute_store_shows_the_stored_row(
    monkeypatch: pytest.MonkeyPatch, precompute_store: Path, data_root: Path
) -> None:
    models = (TINY_TIMM, TINY_CLIP)
    at = _app(
        monkeypatch,
        precompute_store,
        "compare",
        data_root=data_root,
        source="measured",
        models=",".join(models),
    )
    a, b = at.selectbox(key="cmp-a").value, at.selectbox(key="cmp-b").value
    dataset, view = at.selectbox(key="cmp-dataset").value, at.selectbox(key="cmp-view").value
    stored = Store(precompute_store).query(
        "SELECT * FROM paired WHERE dataset = ? AND view = ?", [dataset, view]
    )
    assert len(stored) == 1 and {a, b} == {stored["model_a"][0], stored["model_b"][0]}
    said = " ".join(m.value for m in at.markdown)
    assert f"p = {stored['p_value'][0]:.3g}" in said
    assert f"{stored['kappa'][0]:.3f}" in [m.value for m in at.metric]


def test_calibration_page_shows_the_fitted_temperatures_and_scaled_diagrams(
    monkeypatch: pytest.MonkeyPatch, synthetic_store: Path
) -> None:
    at = _app(monkeypatch, synthetic_store, "calibration")
    assert at.toggle(key="cal-scaled").value
    table = next(df.value for df in at.dataframe if "temperature" in df.value.columns)
    stored = Store(synthetic_store).query(
        "SELECT r.model, m.value FROM metrics m JOIN runs r USING (run_id) WHERE "
        "m.dataset = 'imagenet-val' AND m.view = 'standard' AND m.metric = 'temperature'"
    )
    assert len(table) == len(stored) == len(SYN_MODELS) + len(SYN_RANDOM)
    assert sorted(float(t) for t in table["temperature"]) == pytest.approx(
        sorted(stored["value"]), abs=5e-4
    )
    assert "fold temperatures (0 / 1)" in table.columns
    at.selectbox(key="cal-dataset").set_value("imagenet-sketch").run()
    assert not at.exception  # a shift dataset: its applied temperature, no folds
    table = next(df.value for df in at.dataframe if "temperature" in df.value.columns)
    assert "fold temperatures (0 / 1)" not in table.columns


def test_reliability_diagram_raw_and_scaled() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(500).astype(np.float32)
    correct = rng.random(500) < conf
    bins = M.calibration_bins(conf, correct, 10)
    bins = bins[bins["count"] > 0].assign(model="m")
    one = figures.reliability_diagram(bins, 10, "raw only")
    two = figures.reliability_diagram(bins, 10, "both", bins, {"m": "T = 1.20"})
    assert len(two.data) == 2 * len(one.data) == 6  # accuracy, gap, diagonal per panel
    titles = [a.text for a in two.layout.annotations]
    assert titles == ["m<br>raw", "m<br>scaled, T = 1.20"]


def test_started_outside_the_repository_it_shows_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = tmp_path / "s.duckdb"
    synthetic.fill_store(store, 0.05, models=("deit3_21k",))
    monkeypatch.setenv("BEYOND_INET_STORE", str(store))
    from streamlit import config

    monkeypatch.chdir(tmp_path)  # .streamlit/config.toml (server.address) is not read here
    try:
        config.get_config_options(force_reparse=True)
        at = AppTest.from_file(APP, default_timeout=90).run()
        assert "started outside the repository folder" in at.error[0].value
        assert not at.dataframe and not at.get("plotly_chart")
    finally:  # Streamlit keeps its config per process: read the repository's again
        monkeypatch.chdir(REPO)
        config.get_config_options(force_reparse=True)
    assert not AppTest.from_file(APP, default_timeout=90).run().error
