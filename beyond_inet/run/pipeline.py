"""Orchestration for ``python -m precompute``: for each found dataset, plan, skip what is
done, run the pass (sharded under torchrun) and hand its runs to :mod:`beyond_inet.run.commit`
(in a background thread while the next pass computes). The parts live in their own modules:
records (:mod:`~beyond_inet.run.outputs`), temperature (:mod:`~beyond_inet.run.scaling`),
provenance (:mod:`~beyond_inet.run.provenance`), scoring and commit
(:mod:`~beyond_inet.run.commit`)."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from beyond_inet.datasets import FoundDataset
from beyond_inet.datasets.decode import DecodeWorkers
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.run.commit import (
    ModelRun,
    RunSummary,
    commit_model_run,
    commit_staged_runs,
    fill_missing_paired,
    older_scoring,
    paired_records,
    prepare_model_run,
)
from beyond_inet.run.distributed import Dist
from beyond_inet.run.distributed import init as init_dist
from beyond_inet.run.engine import (
    LOGITS,
    PassResult,
    run_pass,
)
from beyond_inet.run.plan import (
    DatasetPlan,
    InDistribution,
    PrecomputeConfig,
    References,
    find_datasets,
    fitted_temperatures,
    in_distribution_runs,
    load_models,
    model_key,
    plan_dataset,
)
from beyond_inet.run.provenance import utc_now
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
from beyond_inet.scoring.evaluations import (
    PER_IMAGE,
    channels_for,
)
from beyond_inet.store import Store

# --------------------------------------------------------------------------- orchestration


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
    started = utc_now()
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
