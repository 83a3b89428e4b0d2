"""End to end: ``python -m precompute`` with tiny random models on synthetic datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torchmetrics
from huggingface_hub import constants as hf_constants

from beyond_inet.datasets.cue_conflict import CATEGORIES, parse_stimulus_name
from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import PAPER_SUPERVISED_PREPROCESSING
from beyond_inet.reference import imagenet_val_labels
from beyond_inet.scoring import metrics as M
from beyond_inet.store import Store
from beyond_inet.transforms.preprocess import standard_transform
from precompute.cli import main
from tests.conftest import (
    BIASED_CLASS,
    REPO,
    TINY_CLIP,
    TINY_TIMM,
    write_cue_conflict,
    write_flat_val,
)

BASE = ["--random-weights", "--workers", "0", "--bootstrap", "20", "--quiet", "--no-invariance"]


def _cli(data_root: Path, store: Path, *extra: str) -> int:
    return main(
        [
            "--model",
            f"{TINY_TIMM},{TINY_CLIP}",
            "--data-root",
            str(data_root),
            "--store",
            str(store),
            *BASE,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def filled_store(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = tmp_path_factory.mktemp("store") / "results.duckdb"
    assert _cli(data_root, store) == 0
    return Store(store)


def test_runs_record_provenance(filled_store: Store) -> None:
    runs = filled_store.query("SELECT * FROM runs ORDER BY dataset, model")
    assert len(runs) == 4
    assert set(runs["status"]) == {"finished"} and set(runs["weights"]) == {"random"}
    assert runs["random_weights"].all()
    val = runs[runs["dataset"] == "imagenet-val"]
    assert val["n_samples"].tolist() == [12, 12] and val["n_failed"].tolist() == [2, 2]
    failed = {f["sample_id"] for f in json.loads(val["failed"].iloc[0])}
    assert failed == {"ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"}
    pp = json.loads(val[val["model"] == TINY_CLIP]["preprocessing"].iloc[0])
    assert pp["source"] == "open_clip preprocess config" and pp["crop_size"] == 64
    assert pp["resize_mode"] == "shorter"
    cue = runs[(runs["dataset"] == "cue-conflict") & (runs["model"] == TINY_CLIP)]
    cue_pp = json.loads(cue["preprocessing"].iloc[0])  # the dataset's own recipe, recorded
    assert cue_pp["resize_mode"] == "exact" and cue_pp["crop_size"] == 64
    assert cue_pp["mean"] == pp["mean"] and "native-size stimuli" in cue_pp["source"]
    settings = json.loads(runs[runs["model"] == TINY_CLIP]["settings"].iloc[0])
    assert settings["logit_scale"] == 100.0
    assert set(runs["device"]) == {"cpu"} and set(runs["precision"]) == {"fp32"}


def test_imagenet_predictions_are_consistent(filled_store: Store) -> None:
    p = filled_store.query("SELECT * FROM predictions WHERE dataset = 'imagenet-val'")
    assert len(p) == 24 and set(p["view"]) == {"standard"}
    labels = imagenet_val_labels()
    assert (p["label"] == p["sample_id"].map(labels)).all()
    assert (p["correct"] == (p["pred"] == p["label"])).all()
    assert (p["topk_idx"].map(lambda t: t[0]) == p["pred"]).all()
    np.testing.assert_allclose(p["topk_prob"].map(lambda t: t[0]), p["confidence"], rtol=1e-6)
    assert p["topk_prob"].map(lambda t: bool(np.all(np.diff(t) <= 0))).all()
    assert p["decision"].isna().all()
    assert ((p["p_true"] > 0) & (p["p_true"] <= p["confidence"] + 1e-7)).all()


def _metric(store: Store, model: str, dataset: str, metric: str) -> float:
    df = store.query(
        "SELECT value FROM metrics WHERE model = ? AND dataset = ? AND metric = ? "
        "AND view = 'standard'",
        [model, dataset, metric],
    )
    assert len(df) == 1, (model, dataset, metric)
    return float(df["value"].iloc[0])


@pytest.fixture(scope="module")
def biased_store(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """test_vit whose head favours BIASED_CLASS (so some predictions are right), run from a
    --checkpoint file."""
    torch.manual_seed(3)
    model = timm.create_model("test_vit", pretrained=False)
    with torch.no_grad():
        model.head.bias[BIASED_CLASS] += 50.0
        model.head.bias[1] += 49.9  # a close runner-up keeps confidences below 1
    d = tmp_path_factory.mktemp("biased")
    torch.save(model.state_dict(), d / "biased.pt")
    store = d / "b.duckdb"
    assert (
        main(
            [
                "--model",
                TINY_TIMM,
                "--checkpoint",
                str(d / "biased.pt"),
                "--data-root",
                str(data_root),
                "--dataset",
                "imagenet-val",
                "--store",
                str(store),
                "--workers",
                "0",
                "--bootstrap",
                "20",
                "--quiet",
                "--no-invariance",
            ]
        )
        == 0
    )
    return Store(store)


@pytest.mark.parametrize("which", ["random", "biased"])
def test_metrics_match_independent_oracles(
    filled_store: Store, biased_store: Store, which: str
) -> None:
    store, model = (filled_store, TINY_CLIP) if which == "random" else (biased_store, TINY_TIMM)
    filled_store = store
    p = filled_store.query(
        "SELECT * FROM predictions WHERE dataset = 'imagenet-val' AND model = ?", [model]
    )
    assert _metric(filled_store, model, "imagenet-val", "top1") == pytest.approx(
        p["correct"].mean()
    )
    # ECE: torchmetrics on 1000-way probabilities with the stored max-prob at the prediction.
    conf = torch.tensor(p["confidence"].to_numpy(), dtype=torch.float64)
    probs = ((1 - conf) / 999)[:, None].repeat(1, 1000)
    probs[torch.arange(len(p)), torch.tensor(p["pred"].to_numpy())] = conf
    ece = torchmetrics.classification.MulticlassCalibrationError(1000, n_bins=15, norm="l1")
    expected = float(ece(probs, torch.tensor(p["label"].to_numpy().astype(np.int64))))
    assert _metric(filled_store, model, "imagenet-val", "ece") == pytest.approx(expected, 1e-5)
    # ImageNet-X: the imagenet-x package's own pipeline on the stored predictions.
    import imagenet_x

    ann = imagenet_x.load_annotations("top", "val", True)
    preds = pd.DataFrame(
        {
            "file_name": p["sample_id"],
            "predicted_class": p["pred"],
            "predicted_probability": p["confidence"],
        }
    )
    aug = imagenet_x.augment_model_predictions(ann, {"m": preds})
    acc = imagenet_x.compute_factor_accuracies(aug, imagenet_x.FACTORS, "is_correct")
    if which == "random":  # the package yields NaN ratios when nothing is correct
        assert p["correct"].sum() == 0
        return
    assert 0 < p["correct"].sum() < len(p)
    ratios = imagenet_x.error_ratio(acc).loc["m"]
    for factor in imagenet_x.FACTORS:
        got = _metric(filled_store, model, "imagenet-val", f"error_ratio:{factor}")
        if np.isnan(ratios[factor]):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(ratios[factor])


def test_cue_conflict_decisions_and_shape_bias(filled_store: Store) -> None:
    p = filled_store.query("SELECT * FROM predictions WHERE dataset = 'cue-conflict'")
    assert len(p) == 12 and p["label"].isna().all() and p["p_true"].isna().all()
    assert p["decision"].isin(CATEGORIES).all()
    shapes = p["sample_id"].map(lambda s: parse_stimulus_name(s)[0])
    assert (p["correct"] == (p["decision"] == shapes)).all()
    for model, g in p.groupby("model"):
        parsed = [parse_stimulus_name(s) for s in g["sample_id"]]
        expected = M.shape_bias(
            g["decision"].to_numpy(),
            np.array([a for a, _ in parsed]),
            np.array([b for _, b in parsed]),
        )
        for key in ("shape_bias", "shape_accuracy", "texture_accuracy", "shape_bias:cat"):
            got = _metric(filled_store, str(model), "cue-conflict", key)
            assert got == pytest.approx(expected[key], nan_ok=True)


def test_rerun_is_a_no_op_and_force_replaces(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(tmp_path / "r.duckdb")
    args = ("--dataset", "cue-conflict")
    assert _cli(data_root, store.path, *args) == 0
    first = store.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].tolist()
    capsys.readouterr()
    assert _cli(data_root, store.path, *args) == 0
    out = capsys.readouterr()
    assert "skipped" in out.out and "already in" in out.err
    assert "older beyond-inet" not in out.err
    assert store.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].tolist() == first
    # a run an older beyond-inet scored (a migrated v3 store has no scoring version): skipped,
    # with a note of what it lacks
    import duckdb

    with duckdb.connect(str(store.path)) as con:
        settings = json.loads(con.execute("SELECT settings FROM runs").fetchone()[0])
        assert settings["scoring"] == 2
        del settings["scoring"]
        con.execute("UPDATE runs SET settings = ?", [json.dumps(settings)])
    assert _cli(data_root, store.path, *args) == 0
    err = capsys.readouterr().err
    assert "scored by an older beyond-inet and lacks" in err and "rmsce" in err
    assert "--force recomputes it" in err
    assert _cli(data_root, store.path, *args, "--force") == 0
    runs = store.query("SELECT run_id FROM runs")["run_id"].tolist()
    assert len(runs) == 2 and not set(runs) & set(first)
    n = store.query("SELECT run_id, count(*) AS n FROM predictions GROUP BY run_id")
    assert sorted(n["run_id"]) == sorted(runs) and set(n["n"]) == {6}
    assert (
        store.query(
            "SELECT count(*) AS n FROM metrics WHERE run_id NOT IN (SELECT run_id FROM runs)"
        )["n"].iloc[0]
        == 0
    )


def test_checkpoint_run_matches_the_saved_model(data_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(7)
    src = timm.create_model("test_vit", pretrained=False).eval()
    ckpt = tmp_path / "vit.safetensors"
    from safetensors.torch import save_file

    save_file(src.state_dict(), str(ckpt))
    store = Store(tmp_path / "c.duckdb")
    assert (
        main(
            [
                "--model",
                TINY_TIMM,
                "--checkpoint",
                str(ckpt),
                "--data-root",
                str(data_root),
                "--dataset",
                "imagenet-val",
                "--store",
                str(store.path),
                "--workers",
                "0",
                "--bootstrap",
                "0",
                "--quiet",
                "--preprocessing",
                "weights",
                "--no-invariance",
            ]
        )
        == 0
    )
    run = store.query("SELECT weights, random_weights, preprocessing FROM runs").iloc[0]
    assert run["weights"].startswith("checkpoint:sha256:") and not run["random_weights"]
    p = store.query("SELECT sample_id, pred, confidence FROM predictions ORDER BY sample_id")
    from beyond_inet.transforms.preprocess import Preprocessing

    pp = Preprocessing(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in json.loads(run["preprocessing"]).items()
        }
    )
    root = data_root / "imagenet" / "val"
    x = torch.stack(
        [standard_transform(pil_to_tensor(load_rgb(root / s)), pp) for s in p["sample_id"]]
    )
    with torch.no_grad():
        probs = torch.softmax(src(x), -1)
    np.testing.assert_array_equal(p["pred"], probs.argmax(-1).numpy())
    np.testing.assert_allclose(p["confidence"], probs.max(-1).values.numpy(), rtol=1e-5)
    assert pp != PAPER_SUPERVISED_PREPROCESSING


def test_bad_inputs_exit_2_with_one_line(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = str(tmp_path / "x.duckdb")
    cases = [
        (["--model", "deit3_2k", "--data-root", str(data_root)], "Did you mean 'deit3_21k'"),
        (
            ["--model", TINY_TIMM, "--dataset", "imagenet-vall", "--data-root", str(data_root)],
            "Did you mean 'imagenet-val'",
        ),
        (["--model", TINY_TIMM, "--data-root", str(tmp_path / "nothing")], "No dataset found"),
        (
            [
                "--model",
                "all",
                "--checkpoint",
                str(tmp_path / "c.pt"),
                "--data-root",
                str(data_root),
            ],
            "exactly one --model",
        ),
    ]
    (tmp_path / "c.pt").write_bytes(b"")  # exists: the model count is what is wrong
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("my notes")
    assert (
        main(
            [
                "--model",
                TINY_TIMM,
                "--random-weights",
                "--data-root",
                str(data_root),
                "--dataset",
                "cue-conflict",
                "--store",
                str(not_a_store),
                "--quiet",
                "--workers",
                "0",
                "--no-invariance",
            ]
        )
        == 2
    )
    assert "pass another --store" in capsys.readouterr().err
    assert not_a_store.read_text() == "my notes"  # nothing lost
    for argv, message in cases:
        assert main([*argv, "--store", store, "--quiet", "--workers", "0"]) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert main(["--model", "deit3_21k", "--data-root", str(data_root), "--store", store]) == 2
    err = capsys.readouterr().err
    assert "deit3_21k" in err and "not in the local cache" in err
    assert not Path(store).exists()


def test_help_lists_models_and_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "deit3_21k",
        "convnext_base_21k",
        "vit_clip",
        "convnext_clip",
        "imagenet-val",
        "cue-conflict",
        "--random-weights",
        "--checkpoint",
        "--limit",
    ):
        assert name in out


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "precompute", *args],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _kill_when(proc: subprocess.Popen[str], marker: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def _assert_consistent(store: Store) -> pd.DataFrame:
    runs = store.query("SELECT run_id, dataset, n_samples FROM runs")
    if runs.empty:
        return runs
    counts = store.query("SELECT run_id, count(*) AS n FROM predictions GROUP BY run_id")
    merged = runs.merge(counts, on="run_id", how="outer")
    assert (merged["n"] == merged["n_samples"]).all(), merged
    orphans = store.query(
        "SELECT count(*) AS n FROM metrics WHERE run_id NOT IN (SELECT run_id FROM runs)"
    )
    assert orphans["n"].iloc[0] == 0
    return runs


def test_killed_run_leaves_nothing_partial_and_is_redone(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_cue_conflict(root / "cue-conflict", [("cat", "dog"), ("dog", "cat")])
    write_flat_val(root / "imagenet" / "val", 150)
    store = Store(tmp_path / "k.duckdb")
    args = [
        "--model",
        TINY_TIMM,
        "--data-root",
        str(root),
        "--store",
        str(store.path),
        "--dataset",
        "cue-conflict,imagenet-val",
        *BASE,
        "--batch-size",
        "4",
    ]
    _kill_when(_start(args), "loading")  # before anything was stored
    assert _assert_consistent(store).empty
    proc = _start([a for a in args if a != "--quiet"])
    _kill_when(proc, "stored timm:test_vit on cue-conflict")  # mid-way through imagenet-val
    runs = _assert_consistent(store)
    assert runs["dataset"].tolist() == ["cue-conflict"]
    done = _start(args)
    assert done.wait() == 0
    assert sorted(_assert_consistent(store)["dataset"]) == ["cue-conflict", "imagenet-val"]


def test_every_stored_metric_is_in_the_catalogue(filled_store: Store) -> None:
    from beyond_inet.scoring.metric_specs import spec

    names = set(filled_store.query("SELECT DISTINCT metric FROM metrics")["metric"])
    assert {"top1", "ece", "error_ratio_mean", "shape_bias", "agreement"} <= names
    assert {"error_ratio:pose", "shape_bias:cat"} <= names  # names with an argument, too
    for name in names:
        spec(name)  # raises for a metric (or an argument) the catalogue does not describe


def test_a_pass_is_scored_and_committed_while_the_next_pass_runs(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from beyond_inet.run import pipeline

    next_pass_started = threading.Event()
    seen: dict[str, tuple[str, bool]] = {}
    real_run_pass, real_commit = pipeline.run_pass, pipeline.commit_model_run

    def run_pass(found, *a, **k):  # type: ignore[no-untyped-def]
        if found.spec.name == "imagenet-val":
            next_pass_started.set()
        return real_run_pass(found, *a, **k)

    def commit(store, cfg, found, *a, **k):  # type: ignore[no-untyped-def]
        # cue-conflict's commit waits for imagenet-val's pass: it must not block it
        overlapped = found.spec.name != "cue-conflict" or next_pass_started.wait(60)
        seen[found.spec.name] = (threading.current_thread().name, overlapped)
        return real_commit(store, cfg, found, *a, **k)

    monkeypatch.setattr(pipeline, "run_pass", run_pass)
    monkeypatch.setattr(pipeline, "commit_model_run", commit)
    store = Store(tmp_path / "bg.duckdb")
    args = ["--model", TINY_TIMM, "--data-root", str(data_root), "--store", str(store.path)]
    assert main([*args, "--dataset", "cue-conflict,imagenet-val", *BASE]) == 0
    assert seen["cue-conflict"] == ("beyond-inet-commit", True)
    assert set(store.query("SELECT dataset FROM runs")["dataset"]) == {
        "cue-conflict",
        "imagenet-val",
    }


def test_a_failed_background_commit_fails_the_run(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beyond_inet.run import pipeline

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "commit_model_run", broken)
    store = tmp_path / "broken.duckdb"
    args = ["--model", TINY_TIMM, "--data-root", str(data_root), "--store", str(store)]
    assert main([*args, "--dataset", "cue-conflict,imagenet-val", *BASE]) == 1
