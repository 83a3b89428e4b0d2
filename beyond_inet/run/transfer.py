"""Transferability runs (``python -m precompute --transfer TASKS``): per (model, task), the
frozen features of train / val / test (extracted once, cached on disk), the linear probe,
and one stored run with its per-image test predictions and metrics."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa
import torch

from beyond_inet.datasets.transfer import (
    SPLIT_PROTOCOLS,
    SPLITS,
    TaskData,
    TransferTask,
    expand_tasks,
    load_task,
)
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import (
    ImageRecords,
    MetricRow,
    RunRecord,
    identity_key,
    metrics_frame,
    record_from,
    to_arrow,
)
from beyond_inet.run.commit import RunSummary, commit_staged_runs
from beyond_inet.run.engine import score_logits
from beyond_inet.run.errors import PrecomputeError
from beyond_inet.run.features import SplitFeatures, splits_features
from beyond_inet.run.plan import PrecomputeConfig, load_models
from beyond_inet.run.provenance import model_provenance, utc_now
from beyond_inet.scoring.evaluations import score_view
from beyond_inet.scoring.probe import ProbeResult, ProbeSettings, fit_probe
from beyond_inet.settings import cache_dir
from beyond_inet.store import Store


def transfer_evaluations(task: TransferTask) -> tuple[str, ...]:
    """What a probe's test predictions are scored with: accuracy and calibration, plus
    mean per-class accuracy for the tasks that report it."""
    return ("accuracy", "calibration") + (("per_class",) if task.per_class else ())


def transfer_key(model: LoadedModel, td: TaskData, probe: ProbeSettings, precision: str) -> str:
    """A transfer run's identity: model, weights, preprocessing, precision, task content
    and protocol, probe settings."""
    payload = {
        "kind": "transfer",
        "model": model.name,
        "weights": model.weights,
        "preprocessing": model.preprocessing.to_dict(),
        "settings": {k: v for k, v in model.settings.items() if k != "head_cache"},
        "precision": precision,
        "task": td.task.stored,
        "content": td.fingerprint(),
        "protocol": td.protocol.to_dict(),
        "probe": probe.to_dict(),
    }
    return identity_key(payload)


def probe_records(td: TaskData, test: SplitFeatures, result: ProbeResult) -> ImageRecords:
    """The probe's test predictions as per-image records (labels: task class indices)."""
    out = score_logits(
        torch.log(torch.from_numpy(result.probs)), torch.from_numpy(test.labels), None
    )
    samples = td.splits["test"].samples
    own = {
        "sample_id": np.array([samples[i].sample_id for i in test.index], dtype=object),
        "label": test.labels,
        "correct": out["pred"] == test.labels,
        "max_logit": None,  # the probe's log-probabilities are no logits to score OOD by
        "logsumexp": None,
    }
    return record_from(ImageRecords, own, out)


def probe_rows(result: ProbeResult) -> list[MetricRow]:
    """The probe's own numbers: chosen C, split sizes."""
    return [
        MetricRow("probe_c", result.c),
        MetricRow("n_train", float(result.n_train)),
        MetricRow("n_val", float(result.n_val)),
        MetricRow("n_test", float(result.n_test)),
    ]


def _run_one(
    cfg: PrecomputeConfig, store: Store, td: TaskData, model: LoadedModel, key: str, log: Log
) -> RunSummary:
    started = utc_now()
    cache = cfg.cache_dir or cache_dir()
    feats = splits_features(td.splits, model, cfg.run, cache, log, td.task.name, td.root)
    result = fit_probe(
        (feats["train"].values, feats["train"].labels),
        (feats["val"].values, feats["val"].labels),
        feats["test"].values,
        len(td.classes),
        cfg.probe,
    )
    best = result.val_top1.get(result.c, float("nan"))
    log(
        f"probe {model.name} on {td.task.name}: C={result.c:g} (val top-1 {best:.3f}, "
        f"{len(result.val_top1)} values of C tried), {result.seconds:.1f} s"
    )
    capped = int(result.extra.get("fits_at_iteration_cap", 0))
    if capped:
        log(
            f"warning: {capped} probe fit(s) of {model.name} on {td.task.name} stopped at "
            f"{cfg.probe.max_iter} iterations before converging; their numbers are approximate."
        )
    rec = probe_records(td, feats["test"], result)
    run_id = uuid.uuid4().hex[:16]
    scored = [("standard", r) for r in score_view(rec, transfer_evaluations(td.task), cfg.scoring)]
    scored += [("standard", r) for r in probe_rows(result)]
    metrics = metrics_frame(run_id, model.name, td.task.stored, scored)
    failed = [(s, sid, e) for s in SPLITS for sid, e in feats[s].failed]
    extract = sum(feats[s].seconds for s in SPLITS)
    settings = {
        **model.settings,
        "transfer": {
            "task": td.task.name,
            "source": td.source,
            "classes": len(td.classes),
            "protocol": td.protocol.to_dict(),
            "split_rule": td.split_rule,
            "probe": cfg.probe.to_dict(),
            "chosen_c": result.c,
            "val_top1": {f"{c:g}": v for c, v in result.val_top1.items()},
            "feature_seconds": round(extract, 2),
            "probe_seconds": round(result.seconds, 2),
            "probe_fits_at_iteration_cap": capped,
            "features_cached": all(feats[s].cached for s in SPLITS),
        },
    }
    run = RunRecord(
        run_id=run_id,
        run_key=key,
        dataset=td.task.stored,
        status="finished",
        views=json.dumps(["standard"]),
        settings=json.dumps(settings),
        dataset_root=str(td.root.resolve()),
        sample_limit=cfg.limit,
        n_samples=len(rec),
        n_failed=len(failed),
        failed=json.dumps([{"sample_id": f"{s}/{i}", "error": e} for s, i, e in failed]),
        started_at=started,
        finished_at=utc_now(),
        seconds=extract + result.seconds,
        **model_provenance(cfg, model),
    )
    table = to_arrow(rec, run_id, model.name, td.task.stored, "standard")
    stored = store.commit_persistently(run, pa.concat_tables([table]), metrics, cfg.force, log)
    top1 = float(metrics.loc[metrics["metric"] == "top1", "value"].iloc[0])
    return RunSummary(
        model.name,
        td.task.stored,
        "done" if stored else "exists",
        len(rec),
        len(failed),
        run.seconds,
        {"top1": top1, "probe_c": result.c} if stored else {},
    )


def find_tasks(cfg: PrecomputeConfig, log: Log) -> list[TaskData]:
    """The selected tasks found under ``<data-root>/vtab``, split by the protocol."""
    protocol = SPLIT_PROTOCOLS.get(cfg.transfer_protocol)
    found = []
    for task in expand_tasks(cfg.transfer):
        td = load_task(task, cfg.data_root, protocol, cfg.dataset_paths.get(task.name), cfg.limit)
        if td is None:
            where = cfg.dataset_paths.get(task.name) or cfg.data_root / "vtab" / task.name
            log(f"note: {task.name}: not found in {where}; skipped.")
            continue
        found.append(td)
    if not found:
        raise PrecomputeError(
            f"No transfer task found under {cfg.data_root / 'vtab'}. `python -m precompute "
            "--list-datasets` lists every task with its layouts and how to get it."
        )
    return found


def run_transfer(cfg: PrecomputeConfig, log: Log = print) -> list[RunSummary]:
    """Probe every selected model on every found task; store finished runs."""
    store = Store(cfg.store)
    store.check_writable()
    commit_staged_runs(store, log)
    tasks = find_tasks(cfg, log)
    models = load_models(cfg, log)
    summaries = []
    for td in tasks:
        for m in models:
            key = transfer_key(m, td, cfg.probe, cfg.run.precision)
            if not cfg.force and store.finished_run(key):
                log(f"skip {m.name} on {td.task.stored}: already in {cfg.store} (--force redoes)")
                summaries.append(RunSummary(m.name, td.task.stored, "skipped"))
                continue
            summaries.append(_run_one(cfg, store, td, m, key, log))
            log(f"stored {m.name} on {td.task.stored} in {cfg.store}")
    return summaries
