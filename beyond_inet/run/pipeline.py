"""Orchestration for ``python -m precompute``: plan, skip what is done, run the pass, turn
its outputs into per-image records, score them and commit each run."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import beyond_inet
from beyond_inet.datasets import FoundDataset
from beyond_inet.datasets.base import LIMIT_SAMPLING, LIMIT_SEED
from beyond_inet.datasets.decode import DecodeWorkers
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import (
    ImageRecords,
    MetricRow,
    PairedRecord,
    RunRecord,
    metrics_frame,
    to_arrow,
)
from beyond_inet.run.distributed import Dist
from beyond_inet.run.distributed import init as init_dist
from beyond_inet.run.engine import (
    LOGITS,
    SCALED,
    ClassSubset,
    Features,
    LogitOutputs,
    PassResult,
    device_name,
    run_pass,
    score_logits,
)
from beyond_inet.run.plan import (
    DatasetPlan,
    InDistribution,
    PrecomputeConfig,
    References,
    evaluations_for,
    find_datasets,
    fitted_temperatures,
    in_distribution_runs,
    library_versions,
    load_models,
    model_key,
    plan_dataset,
)
from beyond_inet.run.shards import (
    ShardsIncompleteError,
    discard,
    merge_shards,
    pass_folder,
    pass_key,
    shard_folder,
    write_shard,
)
from beyond_inet.scoring import ood
from beyond_inet.scoring import temperature as ts
from beyond_inet.scoring.evaluations import (
    PER_IMAGE,
    ScoringOptions,
    channels_for,
    score_run,
    score_view,
)
from beyond_inet.scoring.paired import compare
from beyond_inet.settings import SCORING_CHANGES, SCORING_VERSION
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


# --------------------------------------------------------------------------- records


def _correct(
    found: FoundDataset, out: LogitOutputs, labels: np.ndarray, decision: np.ndarray | None
) -> np.ndarray:
    rule = found.spec.protocol.decision
    if rule is not None and decision is not None:
        targets = np.array([rule.target(found.samples[i].sample_id) for i in out.index])
        return decision == targets
    correct = (out.pred == labels) & (labels >= 0)
    alt = [found.samples[i].alt_labels for i in out.index]
    if any(alt):  # multi-label datasets: any acceptable label counts
        correct = correct | np.array([p in a for p, a in zip(out.pred, alt, strict=True)])
    return correct


def image_records(
    found: FoundDataset, out: LogitOutputs, decision_labels: tuple[str, ...] | None
) -> ImageRecords:
    """The engine's logits-derived outputs -> per-image records (sample ids, labels,
    correctness by the dataset's rule, decisions as names, factor values)."""
    ids = np.array([found.samples[i].sample_id for i in out.index], dtype=object)
    labels = np.array([found.samples[i].label for i in out.index], dtype=np.int64)
    decision = None
    if out.decision is not None and decision_labels is not None:
        decision = np.asarray(decision_labels, dtype=object)[out.decision]
    factors = [found.samples[i].factor_value for i in out.index]
    factor_value = np.array(factors, dtype=object) if any(f is not None for f in factors) else None
    own = {
        "sample_id": ids,
        "label": labels,
        "correct": _correct(found, out, labels, decision),
        "decision": decision,
        "factor_value": factor_value,
    }
    passed = (
        {f.name for f in fields(ImageRecords)} & {f.name for f in fields(LogitOutputs)}
    ) - set(own)
    return ImageRecords(**own, **{name: getattr(out, name) for name in passed})


def view_name(group: str, transform_view: str) -> str:
    """The stored view of a sample group seen through a transform view."""
    if transform_view == "standard":
        return group
    return transform_view if group == "standard" else f"{group}|{transform_view}"


def split_views(
    found: FoundDataset, outputs: dict[str, LogitOutputs], decision_labels: tuple[str, ...] | None
) -> dict[str, ImageRecords]:
    """Transform-view outputs -> stored views (sample groups x transform views)."""
    groups = np.array([s.group for s in found.samples], dtype=object)
    out: dict[str, ImageRecords] = {}
    for tview, arrays in outputs.items():
        rec = image_records(found, arrays, decision_labels)
        g = groups[arrays.index] if len(arrays.index) else np.array([], dtype=object)
        for group in list(dict.fromkeys(g)) or ["standard"]:
            out[view_name(str(group), tview)] = rec.take(g == group) if len(g) else rec
    return out


# --------------------------------------------------------------------------- temperature


@dataclass(frozen=True)
class Scaling:
    """How a run's outputs were temperature-scaled: the temperature (and a cross-fit's fold
    ones) and the record for the run's settings."""

    temperature: float
    fold_temperatures: tuple[float, ...]
    settings: dict[str, Any]

    def rows(self, views: Iterable[str]) -> list[tuple[str, MetricRow]]:
        """The temperature metric rows of each stored view that was scaled."""
        rows = ts.temperature_rows(self.temperature, self.fold_temperatures)
        return [(v, r) for v in views for r in rows]


def cross_fit_outputs(
    found: FoundDataset, out: LogitOutputs, logits: Features, device: str = "cpu"
) -> tuple[LogitOutputs, ts.CrossFit]:
    """``out`` with the ``*_ts`` outputs of a cross-fit on the pass's full ``logits`` (each
    image scored by :func:`~beyond_inet.run.engine.score_logits` at the other fold's
    temperature), and the fit."""
    order = np.argsort(logits.index, kind="stable")
    rows = order[np.searchsorted(logits.index[order], out.index)]
    z = np.asarray(logits.values[rows], dtype=np.float32)
    labels = np.array([found.samples[i].label for i in out.index], dtype=np.int64)
    ids = [found.samples[i].sample_id for i in out.index]
    fit = ts.cross_fit(z, labels, ts.folds(ids), device)
    if not fit.complete or not len(z):
        return out, fit
    subset_of = found.spec.protocol.class_subset
    subset = ClassSubset.of(subset_of(), device) if subset_of else None
    scaled = score_logits(
        torch.from_numpy(z / fit.per_image[:, None].astype(np.float32)).to(device),
        torch.from_numpy(labels).to(device),
        None,
        subset,
    )
    return replace(out, **{f"{k}_ts": scaled[k] for k in SCALED}), fit


def scale_outputs(
    found: FoundDataset,
    model: str,
    outputs: dict[str, LogitOutputs],
    result: PassResult,
    applied: tuple[float, str] | None,
    log: Log,
    device: str = "cpu",
) -> tuple[dict[str, LogitOutputs], Scaling | None]:
    """Temperature scaling of one model's outputs (transform view -> outputs) by the
    dataset's protocol: cross-fitted on the fit dataset (from the pass's logits); the
    engine already scored an applying dataset at ``applied``."""
    use = found.spec.protocol.role("temperature")
    if use == "apply" and applied is not None:
        return outputs, Scaling(
            applied[0],
            (),
            {"temperature": applied[0], "fitted_by_run": applied[1], "protocol": ts.PROTOCOL},
        )
    logits = result.logits.get((model, "standard"))
    if use != "fit" or logits is None or "standard" not in outputs:
        return outputs, None
    scaled, fit = cross_fit_outputs(found, outputs["standard"], logits, device)
    if not fit.complete:
        log(
            f"note: {model} on {found.spec.name}: a cross-fit fold has no labelled image; "
            "no temperature is fitted (evaluate more images)."
        )
        return outputs, None
    if not fit.identified:
        log(
            f"note: {model} on {found.spec.name}: the temperature is not identified (the NLL "
            f"keeps falling to the edge of {ts.T_BOUNDS}: the labelled images are all "
            "separated, or all tied); none is stored."
        )
        return outputs, None
    settings = {
        "temperature": fit.temperature,
        "fold_temperatures": list(fit.fold_temperatures),
        "protocol": ts.PROTOCOL,
    }
    return {**outputs, "standard": scaled}, Scaling(
        fit.temperature, fit.fold_temperatures, settings
    )


# --------------------------------------------------------------------------- scoring


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


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _headline(metrics: pd.DataFrame) -> dict[str, float]:
    std = metrics[metrics["view"] == "standard"]
    keep = ("top1", "ece", "ece_ts", "error_ratio_mean", "shape_bias")
    return {m: float(v) for m, v in zip(std["metric"], std["value"], strict=True) if m in keep}


def run_record(
    cfg: PrecomputeConfig,
    found: FoundDataset,
    model: LoadedModel,
    views: Sequence[View],
    result: PassResult,
    started: datetime,
    key: str,
    run_id: str,
    temperature_scaling: dict[str, Any] | None = None,
    in_distribution: InDistribution | None = None,
) -> RunRecord:
    """The run's provenance record (its settings: the model's, and how it was
    temperature-scaled, if it was)."""
    settings = dict(model.settings)
    settings["run"] = cfg.run.identity()  # device name, batch size, compile, TF32, decoder
    settings["scoring"] = SCORING_VERSION
    if cfg.limit:
        settings["limit"] = {"images": cfg.limit, "sampling": LIMIT_SAMPLING, "seed": LIMIT_SEED}
    if temperature_scaling:
        settings["temperature_scaling"] = temperature_scaling
    if in_distribution is not None:
        settings["ood"] = {
            "in_distribution_run": in_distribution.run_id,
            "in_distribution_images": in_distribution.n_images,
            "scores": sorted(in_distribution.scores),
        }
    return RunRecord(
        run_id=run_id,
        run_key=key,
        dataset=found.spec.name,
        status="finished",
        views=json.dumps([v.name for v in views]),
        settings=json.dumps(settings),
        dataset_root=str(found.root.resolve()),
        sample_limit=cfg.limit,
        n_samples=result.n_images - len(result.failed),
        n_failed=len(result.failed),
        failed=json.dumps([{"sample_id": s, "error": e} for s, e in result.failed]),
        started_at=started,
        finished_at=_now(),
        seconds=result.seconds,
        **model_provenance(cfg, model),
    )


def model_provenance(cfg: PrecomputeConfig, model: LoadedModel) -> dict[str, Any]:
    """The run-record fields that say which model, weights and code made a run."""
    return {
        "model": model.name,
        "model_label": model.spec.display,
        "weights": model.weights,
        "random_weights": model.is_random,
        "preprocessing": model.preprocessing.to_json(),
        "device": device_name(cfg.run.device),
        "precision": cfg.run.precision,
        "code_version": code_version(),
        "library_versions": json.dumps(library_versions((model.spec.family,)), sort_keys=True),
    }


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


# --------------------------------------------------------------------------- orchestration


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


def _todo(
    cfg: PrecomputeConfig, store: Store, plan: DatasetPlan, log: Log, summaries: list[RunSummary]
) -> list[LoadedModel]:
    todo = []
    for m in plan.models:
        if not cfg.force and store.finished_run(plan.keys[m.name]):
            log(f"skip {m.name} on {plan.found.spec.name}: already in {cfg.store} (--force redoes)")
            older = older_scoring(store.run_settings(plan.keys[m.name]))
            if older:
                log(
                    f"note: that run of {m.name} on {plan.found.spec.name} was scored by an "
                    f"older beyond-inet and lacks {older}; --force recomputes it"
                )
            summaries.append(RunSummary(m.name, plan.found.spec.name, "skipped"))
        else:
            todo.append(m)
    return todo


def _quiet(_message: str) -> None:
    """Other ranks' log: rank 0 speaks for the job."""


def _evaluate(
    cfg: PrecomputeConfig,
    plan: DatasetPlan,
    todo: list[LoadedModel],
    store: Store,
    dist: Dist,
    log: Log,
    log_all: Log,
    decoder: DecodeWorkers | None = None,
) -> tuple[PassResult | None, Path | None]:
    """This process's part of one dataset's pass. Returns the whole pass's result where
    this process commits it (one process, rank 0, ``--merge``), else ``None``; and the
    staging folder to discard after the commit (sharded passes)."""
    found, p = plan.found, plan.found.spec.protocol
    key = pass_key(list(plan.keys.values()), found.spec.name, cfg.run.batch_size)
    folder = pass_folder(store.staging_dir, key)
    if cfg.merge:
        try:
            return merge_shards(folder), folder
        except ShardsIncompleteError as e:
            raise ShardsIncompleteError(
                f"{found.spec.name}: {e}. --merge needs the options of the --shard jobs "
                "(--model, --dataset, --limit, --precision, --batch-size, views, ...)."
            ) from None
    shard = cfg.shard or dist.shard

    def evaluate() -> PassResult:
        if shard.count > 1:
            n = len(shard.positions(len(found.samples), cfg.run.batch_size))
            log_all(
                f"rank {shard.index}/{shard.count}: evaluating {n} of {len(found.samples)} "
                f"images of {found.spec.name}"
            )
        return run_pass(
            found,
            todo,
            cfg.run,
            {m.name: plan.views[m.name] for m in todo},
            p.decision,
            channels_for(p.evaluations, p.run_evaluations)
            | ({PER_IMAGE} if p.roles else set())  # cross-dataset roles read the records
            | ({LOGITS} if p.role("temperature") == "fit" else set()),
            shard=shard,
            temperatures={m: t for m, (t, _) in plan.temperatures.items()},
            decoder=decoder,
        )

    if shard.count == 1:
        return evaluate(), None
    if dist.active and dist.main:
        discard(folder)  # shards an interrupted job left: never merged into this one
    dist.check(None)
    dist.guarded(lambda: write_shard(shard_folder(store.staging_dir, key, shard), evaluate()))
    if cfg.shard is not None:
        log(
            f"staged shard {shard.index}/{shard.count} of {found.spec.name} in {folder}; "
            "`--merge` (with the same options) commits the runs once every shard is staged."
        )
        return None, None
    return (merge_shards(folder), folder) if dist.main else (None, None)


def _load_models(cfg: PrecomputeConfig, dist: Dist, log: Log) -> list[LoadedModel]:
    """Every rank loads the models; rank 0 first, so it alone writes the zero-shot head
    cache and the others read it."""
    loaded: list[LoadedModel] = []

    def load() -> None:
        loaded.extend(load_models(cfg, log))

    dist.guarded(load if dist.main else lambda: None)  # rank 0 writes the head cache ...
    dist.guarded(lambda: None if dist.main else load())  # ... the others then read it
    return loaded


def run_precompute(cfg: PrecomputeConfig, log: Log = print) -> list[RunSummary]:
    """Run every selected model on every found dataset; store finished runs.

    Under ``torchrun`` every rank evaluates its shard, stages it, and rank 0 merges, scores
    and commits (see README "How it runs"); ``cfg.shard`` stages one shard, ``cfg.merge``
    commits staged shards. The store receives the same runs either way."""
    dist = init_dist(cfg.run.cuda)
    try:
        if dist.active:
            cfg = replace(cfg, run=replace(cfg.run, device=dist.device(cfg.run.device)))
        return _precompute(cfg, dist, log)
    finally:
        dist.close()


class _Background:
    """One job at a time in a background thread of the committing process: a pass's scoring
    and commit run while the next pass computes. A daemon thread, so Ctrl-C is never held
    up by a commit (each run commits in one transaction: stopping mid-way leaves nothing
    partial). :meth:`wait` re-raises the job's error."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, job: Callable[[], None] | None) -> None:
        """Run ``job`` in the background (after the previous one has finished)."""
        self.wait()
        if job is None:
            return

        def run() -> None:
            try:
                job()
            except BaseException as e:  # re-raised by wait() in the main thread
                self._error = e

        self._thread = threading.Thread(target=run, name="beyond-inet-commit", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the running job has finished; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _precompute(cfg: PrecomputeConfig, dist: Dist, log_all: Log) -> list[RunSummary]:
    log = log_all if dist.main else _quiet
    store = Store(cfg.store)

    def prepare() -> None:
        if dist.main:
            store.check_writable()
            commit_staged_runs(store, log)

    dist.guarded(prepare)
    found_all = dist.guarded(lambda: find_datasets(cfg, log))
    loaded = _load_models(cfg, dist, log) if dist.active else load_models(cfg, log)
    summaries: list[RunSummary] = []
    run, background, fitted = cfg.run, _Background(), References()
    pending: Callable[[], None] | None = None
    try:
        with DecodeWorkers(run.workers, run.batch_size, run.cuda, run.decode) as decoder:
            for found in found_all:
                pending = _dataset(
                    cfg,
                    found,
                    loaded,
                    store,
                    dist,
                    decoder,
                    summaries,
                    log,
                    log_all,
                    fitted,
                    background,
                    pending,
                )
        dist.guarded(lambda: (background.wait(), pending and pending()))
    except KeyboardInterrupt:
        raise  # the daemon commit thread stops with the process (each commit is atomic)
    except BaseException:
        with contextlib.suppress(BaseException):
            background.wait()  # let a commit in flight finish before reporting the error
        raise
    return summaries


def _dataset(
    cfg: PrecomputeConfig,
    found: FoundDataset,
    loaded: list[LoadedModel],
    store: Store,
    dist: Dist,
    decoder: DecodeWorkers,
    summaries: list[RunSummary],
    log: Log,
    log_all: Log,
    fitted: References,
    background: _Background,
    previous: Callable[[], None] | None,
) -> Callable[[], None] | None:
    """Plan and evaluate one found dataset (every rank takes part); returns the scoring and
    commit of its runs for the committing process to run later (``None`` elsewhere).

    Rank 0 waits for the commit in flight, reads the store for this dataset (temperatures,
    runs already done), then starts ``previous`` (the last dataset's commit) in the
    background: it runs while this pass computes, never while the store is read here."""
    dist.guarded(background.wait if dist.main else lambda: None)
    temps = dist.broadcast(  # rank 0 reads the store; every rank's engine applies them
        dist.guarded(
            lambda: (
                fitted_temperatures(store, cfg, found, loaded, log, fitted) if dist.main else None
            )
        )
    )
    in_dist = dist.guarded(  # rank 0 alone scores and commits: only it needs them
        lambda: in_distribution_runs(store, cfg, found, loaded, log, fitted) if dist.main else None
    )
    plan = dist.guarded(lambda: plan_dataset(cfg, found, loaded, log, temps, in_dist))
    plan.keys = dist.broadcast(plan.keys)  # rank 0's identity (device names could differ)
    names = dist.guarded(  # rank 0 decides (it alone reads the store); all learn of a failure
        lambda: [m.name for m in _todo(cfg, store, plan, log, summaries)] if dist.main else None
    )
    names = dist.broadcast(names)
    dist.guarded(lambda: background.start(previous) if dist.main else None)
    todo = [m for m in plan.models if m.name in (names or [])]
    if not todo:  # every run stored: only paired comparisons an interruption lost remain
        if dist.main and len(plan.models) > 1:
            return functools.partial(fill_missing_paired, store, plan, cfg.scoring, log)
        return None
    started = _now()
    result, folder = _evaluate(cfg, plan, todo, store, dist, log, log_all, decoder)
    prepared = dist.guarded(lambda: _prepare_runs(cfg, plan, todo, result, fitted, log))
    if result is None or prepared is None:
        return None
    return functools.partial(
        _commit, store, cfg, plan, prepared, result, folder, started, summaries, log
    )


def _prepare_runs(
    cfg: PrecomputeConfig,
    plan: DatasetPlan,
    todo: list[LoadedModel],
    result: PassResult | None,
    fitted: References,
    log: Log,
) -> list[ModelRun] | None:
    """Each model's run of a whole pass (where this process has it), temperature-scaled;
    a temperature fitted here, and in-distribution OOD scores, are remembered in ``fitted``
    for the next datasets."""
    if result is None:
        return None
    out = []
    for m in todo:
        prepared = prepare_model_run(
            cfg, plan.found, m, plan.views[m.name], result, log, plan.temperatures.get(m.name)
        )
        protocol, key = plan.found.spec.protocol, model_key(m, cfg.run.precision)
        fits = protocol.role("temperature") == "fit"
        if prepared.scaling is not None and fits and cfg.limit is None:  # whole split only
            fitted.temperatures[key] = (prepared.scaling.temperature, prepared.run_id)
        standard = prepared.records.get("standard", {}).get("standard")
        if protocol.role("ood") == "in-distribution" and standard is not None:
            scores = ood.record_scores(standard)
            fitted.in_distribution[key] = InDistribution(prepared.run_id, len(standard), scores)
        prepared.in_distribution = plan.in_distribution.get(m.name)
        out.append(prepared)
    return out


def _commit(
    store: Store,
    cfg: PrecomputeConfig,
    plan: DatasetPlan,
    prepared: list[ModelRun],
    result: PassResult,
    folder: Path | None,
    started: datetime,
    summaries: list[RunSummary],
    log: Log,
) -> None:
    """Score and commit each model's run of a whole pass, then drop its staged shards."""
    found = plan.found
    for sid, err in result.failed:
        log(f"warning: {found.spec.name}: could not decode {sid}: {err}")
    done: list[RunSummary] = []
    for p in prepared:
        m = p.model
        s = commit_model_run(store, cfg, found, p, result, started, plan.keys[m.name], log)
        summaries.append(s)
        done.append(s)
        if s.status == "done":
            log(f"stored {m.name} on {found.spec.name} in {cfg.store}")
        else:
            log(
                f"not stored: {m.name} on {found.spec.name} — another process stored the "
                f"same run in {cfg.store} meanwhile; kept that one (--force replaces it)."
            )
    pairs = paired_records(found.spec.name, [s for s in done if s.run_id], cfg.scoring)
    if pairs:
        store.commit_paired(pairs, log)
        log(f"stored {len(pairs)} paired comparisons on {found.spec.name} in {cfg.store}")
    for s in done:
        s.correct = {}  # only the pass's paired comparisons need them
    fill_missing_paired(store, plan, cfg.scoring, log)
    if folder is not None:
        discard(folder)  # committed: the staged shards are no longer needed


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
    runs = [(m, r) for m, r in runs if r]
    if len(runs) < 2:
        return
    have = set()
    if store.has_table("paired"):
        df = store.query(
            "SELECT DISTINCT run_a, run_b FROM paired WHERE dataset = ?", [plan.found.spec.name]
        )
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
            records += paired_records(plan.found.spec.name, summaries, opts)
    if records:
        store.commit_paired(records, log)
        log(
            f"stored {len(records)} paired comparisons on {plan.found.spec.name} with runs "
            f"stored earlier in {store.path}"
        )


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
