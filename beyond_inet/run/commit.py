"""Score a pass's runs and commit them: each model's records scored by the dataset's
protocol (and its cross-dataset references), one committed run per model, the paired
comparisons of the pass, and the end-of-run summary."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from beyond_inet.datasets import FoundDataset
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import (
    ImageRecords,
    MetricRow,
    PairedRecord,
    metrics_frame,
    to_arrow,
)
from beyond_inet.run.engine import (
    PassResult,
)
from beyond_inet.run.outputs import split_views
from beyond_inet.run.plan import (
    DatasetPlan,
    InDistribution,
    PrecomputeConfig,
    evaluations_for,
)
from beyond_inet.run.provenance import run_record
from beyond_inet.run.scaling import Scaling, scale_outputs
from beyond_inet.scoring import ood
from beyond_inet.scoring.evaluations import (
    ScoringOptions,
    score_run,
    score_view,
)
from beyond_inet.scoring.paired import compare
from beyond_inet.settings import SCORING_CHANGES
from beyond_inet.store import Store
from beyond_inet.transforms.views import View


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
    run_id: str = ""
    #: stored view -> per-image correctness (for the paired comparisons of the pass)
    correct: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def score_records(
    found: FoundDataset,
    views: Sequence[View],
    records: dict[str, dict[str, ImageRecords]],
    opts: ScoringOptions,
) -> list[tuple[str, MetricRow]]:
    """Every evaluation of the dataset's protocol on a model's records (``records``:
    transform view -> stored view -> records)."""
    scored: list[tuple[str, MetricRow]] = []
    stored: dict[str, ImageRecords] = {}
    for v in views:
        evaluations = evaluations_for(found.spec, v.name)
        for name, rec in records[v.name].items():
            stored[name] = rec
            scored += [(name, r) for r in score_view(rec, evaluations, opts)]
    return scored + score_run(stored, found.spec.protocol.run_evaluations, opts)


def _headline(metrics: pd.DataFrame) -> dict[str, float]:
    std = metrics[metrics["view"] == "standard"]
    keep = ("top1", "ece", "ece_ts", "error_ratio_mean", "shape_bias")
    return {m: float(v) for m, v in zip(std["metric"], std["value"], strict=True) if m in keep}


@dataclass
class ModelRun:
    """One model's part of a pass, temperature-scaled and split into stored views: what
    :func:`commit_model_run` scores and commits (``records``: transform view -> stored view
    -> records)."""

    run_id: str
    model: LoadedModel
    views: Sequence[View]
    records: dict[str, dict[str, ImageRecords]]
    scaling: Scaling | None
    #: the in-distribution run an OOD set's run is scored against
    in_distribution: InDistribution | None = None


def prepare_model_run(
    cfg: PrecomputeConfig,
    found: FoundDataset,
    model: LoadedModel,
    views: Sequence[View],
    result: PassResult,
    log: Log = print,
    temperature: tuple[float, str] | None = None,
) -> ModelRun:
    """One model's outputs from a pass -> scaled per-image records (the temperature fit, when
    the dataset fits one, happens here; ``temperature``: the one the pass applied, and the
    run that fitted it)."""
    outputs, scaling = scale_outputs(
        found,
        model.name,
        {v.name: result.outputs[(model.name, v.name)] for v in views},
        result,
        temperature,
        log,
        cfg.scoring.device,
    )
    records = {
        v.name: split_views(found, {v.name: outputs[v.name]}, result.decision_labels) for v in views
    }
    return ModelRun(uuid.uuid4().hex[:16], model, views, records, scaling)


def commit_model_run(
    store: Store,
    cfg: PrecomputeConfig,
    found: FoundDataset,
    prepared: ModelRun,
    result: PassResult,
    started: datetime,
    key: str,
    log: Log = print,
) -> RunSummary:
    """Score a prepared model run (every evaluation of the dataset's protocol) and commit it
    as one finished run."""
    run_id, model, views, records = (
        prepared.run_id,
        prepared.model,
        prepared.views,
        prepared.records,
    )
    scored = score_records(found, views, records, cfg.scoring)
    reference, standard = prepared.in_distribution, records.get("standard", {}).get("standard")
    if reference is not None and standard is not None:
        rows = ood.ood_rows(reference.scores, reference.n_images, standard)
        scored += [("standard", r) for r in rows]
    if prepared.scaling is not None:
        scored += prepared.scaling.rows(
            name for name, rec in records["standard"].items() if rec.confidence_ts is not None
        )
    tables = [
        to_arrow(rec, run_id, model.name, found.spec.name, name)
        for by_view in records.values()
        for name, rec in by_view.items()
    ]
    metrics = metrics_frame(run_id, model.name, found.spec.name, scored)
    scaling = prepared.scaling and prepared.scaling.settings
    run = run_record(cfg, found, model, views, result, started, key, run_id, scaling, reference)
    stored = store.commit_persistently(run, pa.concat_tables(tables), metrics, cfg.force, log)
    return RunSummary(
        model.name,
        found.spec.name,
        "done" if stored else "exists",
        run.n_samples,
        run.n_failed,
        result.seconds,
        _headline(metrics) if stored else {},
        run_id if stored else "",
        {
            name: np.asarray(rec.correct, dtype=bool)[scored_images(rec)]
            for by_view in records.values()
            for name, rec in by_view.items()
        },
    )


def commit_staged_runs(store: Store, log: Log) -> None:
    """Commit runs an earlier precompute computed but could not commit (staged)."""
    for folder in store.staged_runs():
        run, stored = store.commit_staged(folder)
        what = f"{run.model} on {run.dataset}"
        log(
            f"stored {what} (computed earlier, staged in {folder})"
            if stored
            else f"discarded the staged run of {what}: the store already holds the same run"
        )


def older_scoring(settings: dict[str, Any]) -> str:
    """What a stored run's scoring lacks (its ``settings.scoring`` against
    :data:`SCORING_VERSION`), in words; empty when current."""
    version = settings.get("scoring", 0)
    version = version if isinstance(version, int) else 0
    return "; ".join(SCORING_CHANGES[v] for v in sorted(SCORING_CHANGES) if v > version)


def scored_images(rec: ImageRecords) -> np.ndarray:
    """The images a run's accuracy counts: all where the dataset decides (cue-conflict),
    else the labelled ones (as ``top1``)."""
    return np.ones(len(rec), bool) if rec.decision is not None else rec.label >= 0


def paired_records(
    dataset: str, runs: Sequence[RunSummary], opts: ScoringOptions
) -> list[PairedRecord]:
    """The paired comparison (:func:`beyond_inet.scoring.paired.compare`) of every pair of
    the runs of one pass, on every view both have (the same images, in the same order).
    The correctness compared is that of the scored images (:func:`scored_images`)."""
    out = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            for view, ca in a.correct.items():
                cb = b.correct.get(view)
                if cb is None or len(cb) != len(ca) or not len(ca):  # (no scored image)
                    continue
                c = compare(ca, cb, opts.n_boot, opts.seed, opts.device)
                out.append(
                    PairedRecord(
                        run_a=a.run_id,
                        run_b=b.run_id,
                        model_a=a.model,
                        model_b=b.model,
                        dataset=dataset,
                        view=view,
                        n_images=c.n,
                        both_right=c.test.both_right,
                        only_a=c.test.only_a,
                        only_b=c.test.only_b,
                        both_wrong=c.test.both_wrong,
                        p_value=c.test.p_value,
                        accuracy_diff=c.diff,
                        ci_low=c.ci_low,
                        ci_high=c.ci_high,
                        kappa=c.kappa,
                        n_boot=opts.n_boot,
                    )
                )
    return out


def _stored_correct(store: Store, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A stored run's scored images per view: (sample ids, correct), by sample id (the
    images :func:`scored_images` counts: all where the dataset decides, else labelled)."""
    df = store.query(
        "SELECT view, sample_id, correct, label, decision FROM predictions WHERE run_id = ? "
        "ORDER BY view, sample_id",
        [run_id],
    )
    out = {}
    for view, g in df.groupby("view", sort=False):
        decided = g["decision"].notna().any()
        scored = np.ones(len(g), bool) if decided else (g["label"].fillna(-1) >= 0).to_numpy()
        out[str(view)] = (g["sample_id"].to_numpy()[scored], g["correct"].to_numpy(bool)[scored])
    return out


def fill_missing_paired(store: Store, plan: DatasetPlan, opts: ScoringOptions, log: Log) -> None:
    """The paired comparisons of the plan's stored runs that the store lacks — an earlier
    pass interrupted between its commits, or runs stored by different invocations — from
    their stored predictions (images matched by sample id)."""
    runs = [(m.name, store.finished_run(plan.keys[m.name])) for m in plan.models]
    fill_pairs(store, plan.found.spec.name, [(m, r) for m, r in runs if r], opts, log)


def fill_pairs(
    store: Store,
    dataset: str,
    runs: Sequence[tuple[str, str]],
    opts: ScoringOptions,
    log: Log,
) -> int:
    """The paired comparisons the store lacks between stored ``runs`` ((model, run id)) of
    ``dataset``, from their stored predictions (on each view where both scored the same
    images, matched by sample id); returns how many were stored."""
    if len(runs) < 2:
        return 0
    have = set()
    if store.has_table("paired"):
        df = store.query("SELECT DISTINCT run_a, run_b FROM paired WHERE dataset = ?", [dataset])
        have = {frozenset(x) for x in zip(df["run_a"], df["run_b"], strict=True)}
    correct: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    records = []
    for i, (ma, ra) in enumerate(runs):
        for mb, rb in runs[i + 1 :]:
            if frozenset((ra, rb)) in have:
                continue
            for r in (ra, rb):
                correct.setdefault(r, _stored_correct(store, r))
            summaries = [
                RunSummary(ma, "", "done", run_id=ra),
                RunSummary(mb, "", "done", run_id=rb),
            ]
            for view, (ids_a, ca) in correct[ra].items():
                ids_b, cb = correct[rb].get(view, (None, None))
                if ids_b is not None and np.array_equal(ids_a, ids_b):
                    summaries[0].correct[view], summaries[1].correct[view] = ca, cb
            records += paired_records(dataset, summaries, opts)
    if records:
        store.commit_paired(records, log)
        log(f"stored {len(records)} paired comparisons on {dataset} in {store.path}")
    return len(records)


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
