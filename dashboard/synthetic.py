"""Synthetic results stores for tests, benchmarks and demos (no models, no images needed).

:func:`fill_store` writes plausible runs through :meth:`beyond_inet.store.Store.commit_run`
for every dataset, view and metric name the dashboard knows, at a chosen size: ``scale=1.0``
is the full paper suite (~4.7 M prediction rows per model). Numbers are random but internally
consistent (``top1`` = mean of ``correct``, ECE from the stored confidences).

    python -m dashboard.synthetic --store demo.duckdb --scale 0.01
"""

from __future__ import annotations

import argparse
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from beyond_inet import metrics as M
from beyond_inet.cue_conflict import CATEGORIES, parse_stimulus_name
from beyond_inet.store import PREDICTION_SCHEMA, Store

PAPER_MODELS = ("deit3_21k", "convnext_base_21k", "vit_clip", "convnext_clip")
INVARIANCE_VIEWS = (
    [f"scale:{s}" for s in (1, 1.25, 1.5, 2, 3)]
    + [f"shift:{n}" for n in (0, 5, 30, 75, 100)]
    + [f"resolution:{r}" for r in (112, 224, 336, 512, 640)]
)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression")
PUG_FACTORS = ("Worlds", "Camera_Pitch", "Camera_Yaw", "Camera_Roll", "Object_Pitch",
               "Object_Yaw", "Object_Roll", "Object_Scale", "Object_Texture", "Scene_Light")


@dataclass(frozen=True)
class DatasetPlan:
    """A synthetic dataset: name, full-size image count, views."""

    name: str
    n_images: int
    views: tuple[str, ...] = ("standard",)


def paper_suite() -> list[DatasetPlan]:
    """The full paper suite: ~4.7 M prediction rows per model at scale 1."""
    return [
        DatasetPlan("imagenet-val", 50_000, ("standard", *INVARIANCE_VIEWS)),
        DatasetPlan("imagenet-c", 50_000,
                    tuple(f"{c}:{s}" for c in CORRUPTIONS for s in range(1, 6))),
        DatasetPlan("imagenet-v2", 10_000),
        DatasetPlan("imagenet-sketch", 50_889),
        DatasetPlan("imagenet-r", 30_000),
        DatasetPlan("imagenet-a", 7_500),
        DatasetPlan("imagenet-hard", 10_980),
        DatasetPlan("cue-conflict", 1_280),
        DatasetPlan("pug-imagenet", 8_800, PUG_FACTORS),
    ]


def _val_names(n: int) -> np.ndarray:
    return np.array([f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)])


def _sample_ids(plan: DatasetPlan, n: int, rng: np.random.Generator) -> np.ndarray:
    if plan.name == "imagenet-val":
        return _val_names(n)
    if plan.name == "cue-conflict":
        shapes = rng.choice(CATEGORIES, n)
        tex = rng.choice(CATEGORIES, n)
        return np.array([f"{s}/{s}{i + 1}-{t}{i % 10 + 1}.png"
                         for i, (s, t) in enumerate(zip(shapes, tex, strict=True))])
    return np.array([f"n{i % 1000:08d}/{plan.name}_{i:07d}.JPEG" for i in range(n)])


def _lists(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    n, k = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), type=typ.value_type))


def _predictions(run_id: str, model: str, dataset: str, view: str, ids: np.ndarray,
                 labels: np.ndarray, acc: float, rng: np.random.Generator,
                 decision: np.ndarray | None) -> tuple[pa.Table, dict[str, np.ndarray]]:
    n = len(ids)
    correct = rng.random(n) < acc
    pred = np.where(correct, labels, (labels + rng.integers(1, 1000, n)) % 1000)
    conf = np.where(correct, rng.beta(6, 1.5, n), rng.beta(2, 3, n)).astype(np.float32)
    conf[rng.random(n) < 0.01] = 1.0  # torchmetrics' extra bin
    p_true = np.where(correct, conf, conf * rng.random(n)).astype(np.float32)
    rest = np.sort(rng.dirichlet(np.ones(4), n) * (1 - conf[:, None]), axis=1)[:, ::-1]
    topk_prob = np.c_[conf, np.minimum(rest, conf[:, None])].astype(np.float32)
    topk_idx = np.c_[pred, (pred[:, None] + rng.integers(1, 999, (n, 4))) % 1000]
    brier = ((1 - p_true) ** 2 + (conf - p_true) ** 2).astype(np.float32)
    has_label = decision is None
    cols = {
        "run_id": pa.array([run_id] * n), "model": pa.array([model] * n),
        "dataset": pa.array([dataset] * n), "view": pa.array([view] * n),
        "sample_id": pa.array(ids),
        "label": pa.array(labels, pa.int32()) if has_label else pa.nulls(n, pa.int32()),
        "pred": pa.array(pred, pa.int32()), "confidence": pa.array(conf),
        "p_true": pa.array(p_true) if has_label else pa.nulls(n, pa.float32()),
        "correct": pa.array(correct if has_label else decision == np.array(
            [s.split("/")[0] for s in ids])),
        "topk_idx": _lists(topk_idx.astype(np.int32), pa.list_(pa.int32())),
        "topk_prob": _lists(topk_prob, pa.list_(pa.float32())),
        "decision": pa.array(decision) if decision is not None else pa.nulls(n, pa.string()),
        "brier": pa.array(brier) if has_label else pa.nulls(n, pa.float32()),
    }
    arrays = {"correct": np.asarray(cols["correct"]), "conf": conf, "p_true": p_true,
              "brier": brier, "pred": pred}
    return pa.table(cols, schema=PREDICTION_SCHEMA), arrays


def _ci(value: float, n: int) -> tuple[float, float]:
    half = 1.96 * math.sqrt(max(value * (1 - value), 1e-6) / max(n, 1))
    return value - half, value + half


def _labelled_metrics(a: dict[str, np.ndarray], n: int) -> list[tuple[str, float, float, float]]:
    top1 = float(a["correct"].mean())
    rows = [("top1", top1, *_ci(top1, n)),
            ("top5", min(1.0, top1 + 0.1), math.nan, math.nan),
            ("p_true_mean", float(a["p_true"].mean()), math.nan, math.nan),
            ("ece", M.expected_calibration_error(a["conf"], a["correct"]), math.nan, math.nan),
            ("mce", M.max_calibration_error(a["conf"], a["correct"]), math.nan, math.nan),
            ("nll", M.negative_log_likelihood(a["p_true"]), math.nan, math.nan),
            ("brier", float(a["brier"].mean()), math.nan, math.nan)]
    return rows


def _run(model: str, plan: DatasetPlan, scale: float, seed: int, random_weights: bool,
         dataset_root: str, min_images: int = 32,
         ) -> tuple[dict[str, object], pa.Table, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = max(min_images, round(plan.n_images * scale))
    run_id = uuid.uuid4().hex[:16]
    data_rng = np.random.default_rng(sum(map(ord, plan.name)))  # same images for every model
    ids = _sample_ids(plan, n, data_rng)
    labels = data_rng.integers(0, 1000, n)
    base_acc = {"imagenet-val": 0.84, "imagenet-c": 0.6, "imagenet-v2": 0.75,
                "imagenet-sketch": 0.47, "imagenet-r": 0.62, "imagenet-a": 0.55,
                "imagenet-hard": 0.29, "cue-conflict": 0.3, "pug-imagenet": 0.4}[plan.name]
    base_acc = min(0.97, max(0.02, base_acc + rng.normal(0, 0.04)))
    tables, mrows = [], []
    standard_pred = None
    for k, view in enumerate(plan.views):
        acc = base_acc
        if ":" in view and plan.name == "imagenet-c":
            acc = base_acc * (1 - 0.1 * int(view.rsplit(":", 1)[1]))
        elif ":" in view:
            acc = base_acc * (0.8 + 0.2 * rng.random())
        elif plan.name == "pug-imagenet":
            acc = base_acc * (0.5 + rng.random())
        decision = rng.choice(CATEGORIES, n) if plan.name == "cue-conflict" else None
        vrng = np.random.default_rng(seed * 1000 + k)
        t, a = _predictions(run_id, model, plan.name, view, ids, labels, acc, vrng, decision)
        tables.append(t)
        rows: list[tuple[str, float, float, float]] = []
        if decision is None:
            rows += _labelled_metrics(a, n)
        if view == "standard":
            standard_pred = a["pred"]
        elif standard_pred is not None:
            agree = float((a["pred"] == standard_pred).mean())
            rows.append(("agreement", agree, *_ci(agree, n)))
        if plan.name == "imagenet-val" and view == "standard":
            rows.append(("top1_real", min(1.0, rows[0][1] + 0.04), math.nan, math.nan))
            ratios = rng.uniform(0.6, 1.8, len(M.IMAGENET_X_FACTORS))
            for f, r in zip(M.IMAGENET_X_FACTORS, ratios, strict=True):
                rows += [(f"error_ratio:{f}", float(r), float(r) - 0.1, float(r) + 0.1),
                         (f"factor_accuracy:{f}", 1 - (1 - rows[0][1]) * float(r), math.nan,
                          math.nan),
                         (f"factor_count:{f}", float(rng.integers(50, 5000)), math.nan,
                          math.nan)]
            rows += [("error_ratio_mean", float(ratios.mean()), math.nan, math.nan),
                     ("imagenet_x_images", float(n), math.nan, math.nan)]
        if plan.name in ("imagenet-r", "imagenet-a"):
            rows.append(("top1_1000way", rows[0][1] * 0.9, math.nan, math.nan))
        if plan.name == "pug-imagenet":
            for value in range(0, 360, 45):
                rows.append((f"top1_at:{value}", float(rng.uniform(0.1, 0.9)), math.nan,
                             math.nan))
        if plan.name == "cue-conflict":
            parsed = [parse_stimulus_name(s) for s in ids]
            shapes = np.array([a for a, _ in parsed])
            textures = np.array([b for _, b in parsed])
            sb = M.shape_bias(decision, shapes, textures)
            rows += [(k2, float(v), math.nan, math.nan) for k2, v in sb.items()]
        mrows += [(view, *r) for r in rows]
    if plan.name == "imagenet-c":  # as the real evaluation stores it (see the README)
        top1 = {r[0]: r[2] for r in mrows if r[1] == "top1"}
        ces = []
        for c in CORRUPTIONS:
            accs = [top1[f"{c}:{s}"] for s in range(1, 6)]
            ce = float(np.sum(1 - np.array(accs)) / (5 * 0.8))
            ces.append(ce)
            mrows += [(c, "top1", float(np.mean(accs)), math.nan, math.nan),
                      (c, "ce", ce, math.nan, math.nan)]
        mrows += [("standard", "top1", float(np.mean(list(top1.values()))), math.nan, math.nan),
                  ("standard", "mean_ce", float(np.mean(ces)), math.nan, math.nan),
                  ("standard", "corruptions", float(len(CORRUPTIONS)), math.nan, math.nan)]
    metrics = pd.DataFrame([{"run_id": run_id, "model": model, "dataset": plan.name,
                             "view": v, "metric": m, "value": val, "ci_low": lo, "ci_high": hi}
                            for v, m, val, lo, hi in mrows])
    now = datetime.now(UTC).replace(tzinfo=None)
    run = {
        "run_id": run_id, "run_key": f"synthetic:{model}:{plan.name}:{scale}:{seed}",
        "model": model, "model_label": model, "dataset": plan.name, "status": "finished",
        "weights": "random" if random_weights else "synthetic",
        "random_weights": random_weights, "preprocessing": "{}",
        "views": json.dumps(list(plan.views)), "settings": "{}",
        "dataset_root": str(Path(dataset_root) / plan.name), "sample_limit": None,
        "n_samples": n, "n_failed": 0, "failed": "[]", "started_at": now, "finished_at": now,
        "seconds": 0.0, "device": "synthetic", "precision": "fp32", "code_version": "synthetic",
        "library_versions": "{}",
    }
    return run, pa.concat_tables(tables), metrics


def fill_store(path: Path | str, scale: float = 1.0, models: Sequence[str] = PAPER_MODELS,
               datasets: Sequence[DatasetPlan] | None = None, seed: int = 0,
               random_models: Sequence[str] = (), dataset_root: str = "/nonexistent",
               log: bool = False) -> int:
    """Write one synthetic run per (model, dataset); returns the prediction rows written.

    ``random_models`` are recorded with ``random_weights``; ``dataset_root`` is the folder
    recorded as each run's dataset root (``<root>/<dataset>``)."""
    store = Store(path)
    plans = list(datasets) if datasets is not None else paper_suite()
    total = 0
    for i, model in enumerate([*models, *random_models]):
        for j, plan in enumerate(plans):
            run, preds, mets = _run(model, plan, scale, seed + 100 * i + j,
                                    model in random_models, dataset_root)
            store.commit_run(run, preds, mets, replace=True)
            total += preds.num_rows
            if log:
                print(f"  {model} {plan.name}: {preds.num_rows:,} rows", flush=True)
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fill a synthetic results store for the dashboard.")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--scale", type=float, default=0.01,
                   help="fraction of the full paper suite's images (1.0 = ~18.8 M rows)")
    args = p.parse_args(argv)
    n = fill_store(args.store, args.scale, log=True)
    print(f"wrote {n:,} prediction rows to {args.store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
