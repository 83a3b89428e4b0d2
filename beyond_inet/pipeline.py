"""Orchestration for ``python -m precompute``: what to run, skip, compute, score and store."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import beyond_inet
from beyond_inet.data import (
    DATASETS,
    DatasetSpec,
    FoundDataset,
    dataset_preprocessing,
    discover,
    locate,
)
from beyond_inet.engine import DECISIONS, PassResult, PredictionArrays, RunSettings, run_pass
from beyond_inet.errors import PrecomputeError
from beyond_inet.evaluations import ScoringOptions, ViewPredictions, score_run, score_view
from beyond_inet.models import (
    LoadedModel,
    LoadOptions,
    PreprocessingChoice,
    WeightsSource,
    expand_model_names,
    family,
    load_model,
    resolve_spec,
)
from beyond_inet.settings import DEFAULT_DATA_ROOT, DEFAULT_LOGIT_SCALE, DEFAULT_STORE
from beyond_inet.store import PREDICTION_SCHEMA, Store
from beyond_inet.views import STANDARD, View, parse_view

Log = Callable[[str], None]


@dataclass(frozen=True)
class PrecomputeConfig:
    """Everything one ``precompute`` invocation needs (the CLI builds it from argv)."""

    models: tuple[str, ...]
    data_root: Path = DEFAULT_DATA_ROOT
    store: Path = DEFAULT_STORE
    datasets: tuple[str, ...] | None = None
    dataset_paths: dict[str, Path] = field(default_factory=dict)
    weights: WeightsSource = field(default_factory=WeightsSource)
    preprocessing: PreprocessingChoice = "paper"
    logit_scale: float = DEFAULT_LOGIT_SCALE
    limit: int | None = None
    run: RunSettings = field(default_factory=RunSettings)
    force: bool = False
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    cache_dir: Path | None = None
    #: transform views (besides ``standard``) for datasets whose spec has transform_views.
    extra_views: tuple[str, ...] = ()


@dataclass
class RunSummary:
    """One line of the end-of-run table."""

    model: str
    dataset: str
    status: str  # 'done', 'skipped', 'exists' (another process stored the same run first)
    n_samples: int = 0
    n_failed: int = 0
    seconds: float = 0.0
    headline: dict[str, float] = field(default_factory=dict)


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(beyond_inet.__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return beyond_inet.__version__ + (f"+{sha}" if sha else "")


def library_versions(families: Sequence[str] = ("timm", "open_clip")) -> str:
    """JSON of the versions that affect numbers (torch, torchvision and each family's)."""
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for f in families:
        versions.update(family(f).versions())
    return json.dumps(versions, sort_keys=True)


def select_datasets(names: Sequence[str] | None) -> list[DatasetSpec]:
    """Dataset specs by name (unknown names fail with suggestions); ``None`` = all."""
    return [DATASETS.get(n) for n in names] if names else [s for _, s in DATASETS.items()]


def find_datasets(cfg: PrecomputeConfig, log: Log) -> list[FoundDataset]:
    """Locate the selected datasets; missing ones are skipped with a one-line note."""
    found = []
    for spec in select_datasets(cfg.datasets):
        root = locate(spec, cfg.data_root, cfg.dataset_paths.get(spec.name))
        ds = discover(spec, root, cfg.limit)
        if ds is None:
            log(f"note: {spec.name}: not found at {root} (expected {spec.layout}); skipped.")
            continue
        found.append(ds)
    if not found:
        raise PrecomputeError(
            f"No dataset found under {cfg.data_root}. See `python -m precompute --help` for the "
            "layouts, or give a folder with --dataset-path NAME=DIR."
        )
    return found


def run_key(
    model: LoadedModel,
    dataset: str,
    views: Sequence[View],
    limit: int | None,
    precision: str = "fp32",
    content: str = "",
) -> str:
    """Identity of a run: model, weights, dataset and its content (``content``: the
    :meth:`FoundDataset.fingerprint` of the evaluated files), views, preprocessing,
    settings, precision, limit."""
    payload = {
        "model": model.name,
        "weights": model.weights,
        "dataset": dataset,
        "views": [v.name for v in views],
        "preprocessing": model.preprocessing.to_dict(),
        "settings": {k: v for k, v in model.settings.items() if k != "head_cache"},
        "limit": limit,
        "precision": precision,
        "content": content,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def model_for_dataset(model: LoadedModel, spec: DatasetSpec) -> LoadedModel:
    """``model`` with the preprocessing the dataset's protocol gives it (its own unless the
    dataset owns its input recipe, e.g. cue-conflict at native size)."""
    pp = dataset_preprocessing(spec, model.preprocessing)
    return model if pp == model.preprocessing else replace(model, preprocessing=pp)


def _correct(
    found: FoundDataset, arrays: PredictionArrays, labels: np.ndarray, decision: np.ndarray | None
) -> np.ndarray:
    target = found.spec.decision_target
    if target is not None and decision is not None:
        targets = np.array([target(found.samples[i].sample_id) for i in arrays.index])
        return decision == targets
    correct = (arrays.pred == labels) & (labels >= 0)
    alt = [found.samples[i].alt_labels for i in arrays.index]
    if any(alt):  # multi-label datasets: any acceptable label counts
        correct = correct | np.array([p in a for p, a in zip(arrays.pred, alt, strict=True)])
    return correct


def view_predictions(
    found: FoundDataset, arrays: PredictionArrays, decision_labels: tuple[str, ...] | None
) -> ViewPredictions:
    """Engine arrays -> the scoring input (sample ids, labels, decisions as names)."""
    ids = np.array([found.samples[i].sample_id for i in arrays.index], dtype=object)
    labels = np.array([found.samples[i].label for i in arrays.index], dtype=np.int64)
    decision = None
    if arrays.decision is not None and decision_labels is not None:
        decision = np.asarray(decision_labels, dtype=object)[arrays.decision]
    factors = [found.samples[i].factor_value for i in arrays.index]
    factor_value = np.array(factors, dtype=object) if any(f is not None for f in factors) else None
    return ViewPredictions(
        sample_ids=ids,
        labels=labels,
        pred=arrays.pred,
        confidence=arrays.confidence,
        p_true=arrays.p_true,
        correct=_correct(found, arrays, labels, decision),
        topk_idx=arrays.topk_idx,
        topk_prob=arrays.topk_prob,
        brier=arrays.brier,
        decision=decision,
        pred_full=arrays.pred_full,
        factor_value=factor_value,
    )


def view_name(group: str, transform_view: str) -> str:
    """The stored view of a sample group seen through a transform view."""
    if transform_view == "standard":
        return group
    return transform_view if group == "standard" else f"{group}|{transform_view}"


def split_views(
    found: FoundDataset,
    outputs: dict[str, PredictionArrays],
    decision_labels: tuple[str, ...] | None,
) -> dict[str, ViewPredictions]:
    """Transform-view outputs -> stored views (sample groups x transform views)."""
    groups = np.array([s.group for s in found.samples], dtype=object)
    out: dict[str, ViewPredictions] = {}
    for tview, arrays in outputs.items():
        vp = view_predictions(found, arrays, decision_labels)
        g = groups[arrays.index] if len(arrays.index) else np.array([], dtype=object)
        names = list(dict.fromkeys(g)) or ["standard"]
        for group in names:
            out[view_name(str(group), tview)] = vp.take(g == group) if len(g) else vp
    return out


def _nullable(x: np.ndarray) -> pa.Array:
    return pa.array(x.astype(np.float32), mask=~np.isfinite(x))


def prediction_table(
    run_id: str, model: str, dataset: str, view: str, p: ViewPredictions
) -> pa.Table:
    """Per-image rows for the store (Arrow, bulk-inserted)."""
    k = p.topk_idx.shape[1]
    n = len(p.sample_ids)

    def lists(values: np.ndarray, typ: pa.DataType) -> pa.Array:
        flat = pa.array(values.reshape(-1), type=typ)
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), flat
        )

    labels = p.labels
    cols = {
        "run_id": pa.array([run_id] * n, pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "dataset": pa.array([dataset] * n, pa.string()),
        "view": pa.array([view] * n, pa.string()),
        "sample_id": pa.array(p.sample_ids.astype(str), pa.string()),
        "label": pa.array(labels.astype(np.int32), mask=labels < 0),
        "pred": pa.array(p.pred.astype(np.int32)),
        "confidence": pa.array(p.confidence.astype(np.float32)),
        "p_true": _nullable(p.p_true),
        "correct": pa.array(p.correct.astype(bool)),
        "topk_idx": lists(p.topk_idx.astype(np.int32), pa.int32()),
        "topk_prob": lists(p.topk_prob.astype(np.float32), pa.float32()),
        "decision": pa.nulls(n, pa.string())
        if p.decision is None
        else pa.array(p.decision.astype(str), pa.string()),
        "brier": _nullable(p.brier),
    }
    return pa.table(cols, schema=PREDICTION_SCHEMA)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _headline(rows: pd.DataFrame) -> dict[str, float]:
    std = rows[rows["view"] == "standard"]
    keep = ("top1", "ece", "error_ratio_mean", "shape_bias")
    return {m: float(v) for m, v in zip(std["metric"], std["value"], strict=True) if m in keep}


def evaluations_for(spec: DatasetSpec, transform_view: str) -> tuple[str, ...]:
    """Per-view evaluations for one transform view: all of ``spec.evaluations`` for
    ``standard``; ``spec.view_evaluations`` (when set) for scale / shift / resolution."""
    if transform_view == STANDARD.name or spec.view_evaluations is None:
        return spec.evaluations
    return spec.view_evaluations


def runnable_views(
    model: LoadedModel, views: Sequence[View], settings: RunSettings, log: Log
) -> list[View]:
    """``views`` minus those whose input size ``model`` cannot take (e.g. a fixed-size
    architecture at ``resolution:<r>``): one probe forward per other size, a note for each
    view dropped."""
    native = model.preprocessing.crop_size
    sizes = {v.input_size(model.preprocessing) for v in views} - {native}
    bad: dict[int, str] = {}
    if sizes:
        module = model.module.to(settings.device).eval()
        for size in sorted(sizes):
            probe = torch.zeros(1, 3, size, size, device=settings.device)
            try:
                with torch.inference_mode():
                    module(probe)
            except Exception as e:  # any failure means: this model cannot run at this size
                bad[size] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    keep = []
    for v in views:
        size = v.input_size(model.preprocessing)
        if size in bad:
            log(
                f"note: {model.name} cannot run at {size}x{size} ({bad[size]}); "
                f"view {v.name} skipped for it."
            )
        else:
            keep.append(v)
    return keep


def store_model_run(
    store: Store,
    cfg: PrecomputeConfig,
    found: FoundDataset,
    model: LoadedModel,
    views: Sequence[View],
    result: PassResult,
    started: datetime,
    key: str,
    log: Log = print,
) -> RunSummary:
    """Score one model's outputs from a pass and commit them as one finished run."""
    run_id = uuid.uuid4().hex[:16]
    stored: dict[str, ViewPredictions] = {}
    tables, scored = [], []
    for v in views:
        evaluations = evaluations_for(found.spec, v.name)
        split = split_views(
            found, {v.name: result.outputs[(model.name, v.name)]}, result.decision_labels
        )
        for name, vp in split.items():
            stored[name] = vp
            tables.append(prediction_table(run_id, model.name, found.spec.name, name, vp))
            scored += [(name, r) for r in score_view(vp, evaluations, cfg.scoring)]
    scored += score_run(stored, found.spec.run_evaluations, cfg.scoring)
    metric_rows = [
        {
            "run_id": run_id,
            "model": model.name,
            "dataset": found.spec.name,
            "view": view,
            "metric": r.metric,
            "value": r.value,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
        }
        for view, r in scored
    ]
    metrics = pd.DataFrame(
        metric_rows,
        columns=["run_id", "model", "dataset", "view", "metric", "value", "ci_low", "ci_high"],
    )
    run = {
        "run_id": run_id,
        "run_key": key,
        "model": model.name,
        "model_label": model.spec.display,
        "dataset": found.spec.name,
        "status": "finished",
        "weights": model.weights,
        "random_weights": model.is_random,
        "preprocessing": model.preprocessing.to_json(),
        "views": json.dumps([v.name for v in views]),
        "settings": json.dumps(model.settings),
        "dataset_root": str(found.root.resolve()),
        "sample_limit": cfg.limit,
        "n_samples": result.n_images - len(result.failed),
        "n_failed": len(result.failed),
        "failed": json.dumps([{"sample_id": s, "error": e} for s, e in result.failed]),
        "started_at": started,
        "finished_at": _now(),
        "seconds": result.seconds,
        "device": cfg.run.device,
        "precision": cfg.run.precision,
        "code_version": code_version(),
        "library_versions": library_versions((model.spec.family,)),
    }
    stored = store.commit_persistently(run, pa.concat_tables(tables), metrics, cfg.force, log)
    status = "done" if stored else "exists"
    return RunSummary(
        model.name,
        found.spec.name,
        status,
        run["n_samples"],
        run["n_failed"],
        result.seconds,
        _headline(metrics) if stored else {},
    )


def load_models(cfg: PrecomputeConfig, log: Log) -> list[LoadedModel]:
    """Resolve every name first (typos fail before any loading), then load each."""
    names = expand_model_names(list(cfg.models))
    if cfg.weights.kind == "checkpoint" and len(names) != 1:
        raise PrecomputeError("--checkpoint needs exactly one --model (the checkpoint's arch).")
    for n in names:
        resolve_spec(n)
    opts = LoadOptions(
        weights=cfg.weights,
        preprocessing=cfg.preprocessing,
        logit_scale=cfg.logit_scale,
        cache_dir=cfg.cache_dir,
    )
    loaded = []
    for n in names:
        log(f"loading {n} ...")
        loaded.append(load_model(n, opts))
        if loaded[-1].is_random:
            log(f"warning: {n} has RANDOM weights; its numbers are meaningless (smoke test).")
    return loaded


def commit_staged_runs(store: Store, log: Log) -> None:
    """Commit runs an earlier precompute computed but could not commit (staged)."""
    for folder in store.staged_runs():
        run, stored = store.commit_staged(folder)
        what = f"{run['model']} on {run['dataset']}"
        log(
            f"stored {what} (computed earlier, staged in {folder})"
            if stored
            else f"discarded the staged run of {what}: the store already holds the same run"
        )


def run_precompute(cfg: PrecomputeConfig, log: Log = print) -> list[RunSummary]:
    """Run every selected model on every found dataset; store finished runs."""
    store = Store(cfg.store)
    store.check_writable()
    commit_staged_runs(store, log)
    found_all = find_datasets(cfg, log)
    loaded = load_models(cfg, log)
    summaries: list[RunSummary] = []
    grid = [parse_view(v) for v in cfg.extra_views]
    for found in found_all:
        models = [model_for_dataset(m, found.spec) for m in loaded]
        views = [STANDARD, *grid] if found.spec.transform_views else [STANDARD]
        per_model = {m.name: runnable_views(m, views, cfg.run, log) for m in models}
        content = found.fingerprint()
        keys = {
            m.name: run_key(
                m, found.spec.name, per_model[m.name], cfg.limit, cfg.run.precision, content
            )
            for m in models
        }
        todo = []
        for m in models:
            if not cfg.force and store.finished_run(keys[m.name]):
                log(f"skip {m.name} on {found.spec.name}: already in {cfg.store} (--force redoes)")
                summaries.append(RunSummary(m.name, found.spec.name, "skipped"))
            else:
                todo.append(m)
        if not todo:
            continue
        started = _now()
        rule = DECISIONS.get(found.spec.decision)() if found.spec.decision else None
        result = run_pass(found, todo, cfg.run, {m.name: per_model[m.name] for m in todo}, rule)
        for sid, err in result.failed:
            log(f"warning: {found.spec.name}: could not decode {sid}: {err}")
        for m in todo:
            s = store_model_run(
                store, cfg, found, m, per_model[m.name], result, started, keys[m.name], log
            )
            summaries.append(s)
            if s.status == "done":
                log(f"stored {m.name} on {found.spec.name} in {cfg.store}")
            else:
                log(
                    f"not stored: {m.name} on {found.spec.name} — another process stored the "
                    f"same run in {cfg.store} meanwhile; kept that one (--force replaces it)."
                )
    return summaries


def format_summary(summaries: Sequence[RunSummary]) -> str:
    """A plain-text table of the runs (one per model x dataset)."""
    rows: list[dict[str, Any]] = []
    for s in summaries:
        row: dict[str, Any] = {
            "model": s.model,
            "dataset": s.dataset,
            "status": s.status,
            "images": s.n_samples,
            "failed": s.n_failed,
            "seconds": round(s.seconds, 1),
        }
        row.update({k: round(v, 4) for k, v in s.headline.items()})
        rows.append(row)
    if not rows:
        return "(nothing run)"
    return pd.DataFrame(rows).astype(object).fillna("").to_string(index=False)
