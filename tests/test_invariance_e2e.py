"""End to end: ``python -m precompute`` with small invariance grids lands every view of
ImageNet val with ``top1``, ``p_true_mean`` and ``agreement``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import LoadedModel
from beyond_inet.store import Store
from beyond_inet.transforms.views import parse_view
from precompute.cli import main
from tests.conftest import TINY_CLIP, TINY_TIMM, write_flat_val

GRID = ["--scales", "1,1.5", "--shifts", "0,30", "--resolutions", "64,112"]
VIEWS = [
    "standard",
    "scale:1",
    "scale:1.5",
    "shift:0",
    "shift:30",
    "resolution:64",
    "resolution:112",
]
N_IMAGES = 8


def _argv(root: Path, store: Path, grid: list[str] = GRID) -> list[str]:
    return [
        "--model",
        f"{TINY_TIMM},{TINY_CLIP}",
        "--data-root",
        str(root),
        "--store",
        str(store),
        "--dataset",
        "imagenet-val",
        "--random-weights",
        "--workers",
        "0",
        "--bootstrap",
        "20",
        "--quiet",
        *grid,
    ]


@pytest.fixture(scope="module")
def val_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inv-data")
    write_flat_val(root / "imagenet" / "val", N_IMAGES, seed=3)
    return root


@pytest.fixture(scope="module")
def store(val_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("inv-store") / "results.duckdb"
    assert main(_argv(val_root, path)) == 0
    return Store(path)


@pytest.fixture(scope="module")
def predictions(store: Store) -> pd.DataFrame:
    return store.query("SELECT * FROM predictions ORDER BY model, view, sample_id")


@pytest.fixture(scope="module")
def metrics(store: Store) -> pd.DataFrame:
    return store.query("SELECT * FROM metrics")


def _value(metrics: pd.DataFrame, model: str, view: str, metric: str) -> float:
    row = metrics[
        (metrics["model"] == model) & (metrics["view"] == view) & (metrics["metric"] == metric)
    ]
    assert len(row) == 1, (model, view, metric)
    return float(row["value"].iloc[0])


def test_every_view_lands_for_every_model(store: Store, predictions: pd.DataFrame) -> None:
    runs = store.query("SELECT model, views, n_samples FROM runs ORDER BY model")
    assert runs["model"].tolist() == sorted([TINY_TIMM, TINY_CLIP])
    assert all(json.loads(v) == VIEWS for v in runs["views"])
    for (_model, _view), rows in predictions.groupby(["model", "view"]):
        assert len(rows) == N_IMAGES and rows["sample_id"].is_unique
    assert set(predictions["view"]) == set(VIEWS)
    assert len(predictions) == 2 * len(VIEWS) * N_IMAGES


def test_per_view_metrics_match_the_stored_predictions(
    predictions: pd.DataFrame, metrics: pd.DataFrame
) -> None:
    for (model, view), rows in predictions.groupby(["model", "view"]):
        assert _value(metrics, model, view, "top1") == pytest.approx(rows["correct"].mean())
        assert _value(metrics, model, view, "p_true_mean") == pytest.approx(
            rows["p_true"].mean(), rel=1e-5
        )
        std = predictions[(predictions["model"] == model) & (predictions["view"] == "standard")]
        joined = rows.merge(std, on="sample_id", suffixes=("", "_std"))
        assert len(joined) == N_IMAGES
        expected = float((joined["pred"] == joined["pred_std"]).mean())
        assert _value(metrics, model, view, "agreement") == pytest.approx(expected)


def test_heavy_metrics_only_for_the_standard_view(metrics: pd.DataFrame) -> None:
    by_view = metrics.groupby("view")["metric"].apply(set)
    for heavy in ("ece", "nll", "error_ratio_mean"):
        assert heavy in by_view["standard"]
    for view in VIEWS[1:]:
        assert by_view[view] == {"top1", "top5", "p_true_mean", "agreement"}, view


def test_views_identical_to_standard_agree_fully(
    predictions: pd.DataFrame, metrics: pd.DataFrame
) -> None:
    identical = {
        TINY_TIMM: ["scale:1"],  # resize 168, crop 160 == standard
        TINY_CLIP: ["scale:1", "resolution:64"],
    }  # crop ratio 1: resize 64, crop 64
    for model, views in identical.items():
        std = predictions[(predictions["model"] == model) & (predictions["view"] == "standard")]
        for view in ["standard", *views]:
            assert _value(metrics, model, view, "agreement") == 1.0
            same = predictions[(predictions["model"] == model) & (predictions["view"] == view)]
            np.testing.assert_array_equal(same["pred"].to_numpy(), std["pred"].to_numpy())
            np.testing.assert_array_equal(
                same["confidence"].to_numpy(), std["confidence"].to_numpy()
            )


@pytest.mark.parametrize("view", ["shift:30", "resolution:112", "scale:1.5"])
def test_stored_views_match_a_direct_forward_pass(
    view: str, val_root: Path, predictions: pd.DataFrame, tiny_timm: LoadedModel
) -> None:
    rows = predictions[(predictions["model"] == TINY_TIMM) & (predictions["view"] == view)]
    folder = val_root / "imagenet" / "val"
    transform = parse_view(view).transform
    x = torch.stack(
        [
            transform(pil_to_tensor(load_rgb(folder / s)), tiny_timm.preprocessing)
            for s in rows["sample_id"]
        ]
    )
    with torch.no_grad():
        probs = torch.softmax(tiny_timm.module(x), -1).numpy()
    np.testing.assert_array_equal(rows["pred"].to_numpy(), probs.argmax(1))
    np.testing.assert_allclose(rows["confidence"].to_numpy(), probs.max(1), rtol=1e-5)


def test_rerun_with_the_same_grid_is_skipped_and_another_grid_is_a_new_run(
    val_root: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(val_root, store.path)) == 0
    assert capsys.readouterr().err.count("skip ") == 2
    assert main(_argv(val_root, store.path, ["--no-invariance"])) == 0
    runs = store.query("SELECT views FROM runs")
    assert sorted(len(json.loads(v)) for v in runs["views"]) == [1, 1, 7, 7]
