"""Representation similarity runs (``python -m precompute --cka A,B``): linear CKA between
every layer tap of model A and every layer tap of model B (or A with itself) on N images of
a dataset, accumulated minibatch by minibatch from the engine's ``taps`` channel (the
activations of one batch are held at a time), stored as one ``cka_runs`` row and its
layer x layer cells."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from beyond_inet.datasets import FoundDataset
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import CkaRunRecord, cka_cells, identity_key
from beyond_inet.run.engine import TAPS, device_name, run_pass
from beyond_inet.run.errors import PrecomputeError
from beyond_inet.run.plan import (
    PrecomputeConfig,
    find_datasets,
    library_versions,
    load_models,
    model_for_dataset,
)
from beyond_inet.run.provenance import code_version, utc_now
from beyond_inet.scoring.cka import CKA_ESTIMATORS, MIN_BATCH, FullBatchCKA, MinibatchCKA
from beyond_inet.store import Store

DEFAULT_DATASET = "imagenet-val"


def choose_images(found: FoundDataset, n: int, seed: int = 0) -> FoundDataset:
    """A seeded sample of ``n`` of the dataset's images (all when it has fewer), in their
    listed order, so every class can appear (the first ``n`` of a class-sorted folder
    would not)."""
    if n >= len(found.samples):
        return found
    pick = np.sort(np.random.default_rng(seed).choice(len(found.samples), n, replace=False))
    return replace(found, samples=[found.samples[i] for i in pick])


@dataclass
class _PairSink:
    """Receives each batch's pooled taps per model and feeds the accumulator once both
    models (or the one, compared with itself) have seen the batch."""

    a: str
    b: str
    layers_a: list[str]
    layers_b: list[str]
    acc: MinibatchCKA | FullBatchCKA
    pending: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]
    skipped: int = 0

    def __call__(self, model: str, index: np.ndarray, taps: dict[str, np.ndarray]) -> None:
        self.pending[model] = (index, taps)
        if self.a not in self.pending or self.b not in self.pending:
            return
        (ia, ta), (ib, tb) = self.pending[self.a], self.pending[self.b]
        self.pending.clear()
        if not np.array_equal(ia, ib):
            raise RuntimeError("CKA: the two models saw different images in a batch")
        if len(ia) < MIN_BATCH and isinstance(self.acc, MinibatchCKA):  # HSIC_1 needs 4+
            self.skipped += len(ia)
            return
        xs = [ta[n] for n in self.layers_a]
        ys = xs if self.a == self.b else [tb[n] for n in self.layers_b]
        self.acc.update(xs, ys)


def cka_key(
    a: LoadedModel,
    b: LoadedModel,
    found: FoundDataset,
    tokens: str,
    precision: str,
    batch_size: int,
    estimator: str = "minibatch",
) -> str:
    """A CKA run's identity: both models (weights, preprocessing), the images, pooling,
    precision, the estimator and (for the minibatch estimator) its minibatch size."""
    payload = {
        "kind": "cka",
        "models": [
            {"name": m.name, "weights": m.weights, "preprocessing": m.preprocessing.to_dict()}
            for m in (a, b)
        ],
        "dataset": found.spec.name,
        "content": found.fingerprint(),
        "tokens": tokens,
        "precision": precision,
        "batch_size": batch_size if estimator == "minibatch" else None,
    }
    if estimator != "minibatch":  # keys of minibatch runs stay as they were
        payload["estimator"] = estimator
    return identity_key(payload)


def compute_cka(
    found: FoundDataset,
    a: LoadedModel,
    b: LoadedModel,
    cfg: PrecomputeConfig,
    log: Log = print,
) -> tuple[np.ndarray, list[str], list[str], int, float]:
    """(CKA matrix [taps of a, taps of b], a's tap names, b's, images used, seconds)."""
    layers_a = list(a.module.tap_points())
    layers_b = list(b.module.tap_points())
    for m, layers in ((a, layers_a), (b, layers_b)):
        if not layers:
            raise PrecomputeError(f"{m.name} exposes no layer taps; CKA needs them.")
    accumulator = CKA_ESTIMATORS[cfg.cka_estimator][0](len(layers_a), len(layers_b))
    sink = _PairSink(a.name, b.name, layers_a, layers_b, accumulator, {})
    models = [a] if a.name == b.name else [a, b]
    start = time.perf_counter()
    result = run_pass(
        found,
        models,
        cfg.run,
        channels=(TAPS,),
        taps={m.name: list(m.module.tap_points()) for m in models},
        tokens=cfg.cka_tokens,
        tap_sink=sink,
    )
    for sid, err in result.failed:
        log(f"warning: {found.spec.name}: could not decode {sid}: {err}")
    if sink.skipped:
        log(f"note: {sink.skipped} image(s) of a final batch under {MIN_BATCH} left out of CKA")
    if not sink.acc.batches:
        raise PrecomputeError(
            f"CKA needs minibatches of at least {MIN_BATCH} decodable images: raise "
            f"--batch-size (now {cfg.run.batch_size}) or give more images."
        )
    return sink.acc.value(), layers_a, layers_b, sink.acc.images, time.perf_counter() - start


def _pair(cfg: PrecomputeConfig) -> tuple[str, str]:
    names = list(cfg.cka or ())
    if len(names) == 1:
        names = names * 2
    if len(names) != 2:
        raise PrecomputeError("--cka takes two models, MODEL_A,MODEL_B (or one: with itself).")
    return names[0], names[1]


def _by_name(models: Sequence[LoadedModel], name: str) -> LoadedModel:
    found = next((m for m in models if m.name == name or m.spec.name == name), None)
    if found is None:
        raise PrecomputeError(f"--cka takes two model names (not a group such as 'all'): {name}")
    return found


def run_cka(cfg: PrecomputeConfig, log: Log = print) -> str:
    """Compute and store the CKA matrix of the ``cfg.cka`` pair; returns a summary line."""
    name_a, name_b = _pair(cfg)
    store = Store(cfg.store)
    store.check_writable()
    datasets = cfg.datasets or (DEFAULT_DATASET,)
    if len(datasets) != 1:
        raise PrecomputeError("--cka runs on one --dataset (default imagenet-val).")
    found = find_datasets(replace(cfg, datasets=datasets, limit=None), log)[0]
    found = choose_images(found, cfg.cka_images)
    loaded = load_models(replace(cfg, models=tuple(dict.fromkeys((name_a, name_b)))), log)
    a = model_for_dataset(_by_name(loaded, name_a), found.spec)
    b = model_for_dataset(_by_name(loaded, name_b), found.spec)
    key = cka_key(
        a, b, found, cfg.cka_tokens, cfg.run.precision, cfg.run.batch_size, cfg.cka_estimator
    )
    if not cfg.force and store.finished_cka(key):
        return f"skip CKA {a.name} x {b.name}: already in {cfg.store} (--force redoes)"
    started = utc_now()
    matrix, la, lb, n, seconds = compute_cka(found, a, b, cfg, log)
    run_id = uuid.uuid4().hex[:16]
    run = CkaRunRecord(
        run_id=run_id,
        run_key=key,
        model_a=a.name,
        model_b=b.name,
        dataset=found.spec.name,
        n_images=n,
        tokens=cfg.cka_tokens,
        layers_a=json.dumps(la),
        layers_b=json.dumps(lb),
        weights_a=a.weights,
        weights_b=b.weights,
        random_weights=a.is_random or b.is_random,
        preprocessing_a=a.preprocessing.to_json(),
        preprocessing_b=b.preprocessing.to_json(),
        dataset_root=str(found.root.resolve()),
        estimator=CKA_ESTIMATORS[cfg.cka_estimator][1],
        batch_size=cfg.run.batch_size,
        started_at=started,
        finished_at=utc_now(),
        seconds=seconds,
        device=device_name(cfg.run.device),
        precision=cfg.run.precision,
        code_version=code_version(),
        library_versions=json.dumps(
            library_versions(tuple({a.spec.family, b.spec.family})), sort_keys=True
        ),
    )
    cells: pa.Table = cka_cells(run_id, matrix, la, lb)
    if not store.commit_cka(run, cells, cfg.force, log):
        return (
            f"not stored: CKA {a.name} x {b.name} — another process stored the same run in "
            f"{cfg.store} meanwhile; kept that one (--force replaces it)."
        )
    off = ~np.eye(*matrix.shape, dtype=bool) if a.name == b.name else np.ones_like(matrix, bool)
    mean = float(np.nanmean(matrix[off])) if off.any() else float("nan")
    what = "mean off-diagonal CKA" if a.name == b.name else "mean CKA"
    return (
        f"stored CKA {a.name} x {b.name} on {n} images of {found.spec.name} "
        f"({len(la)} x {len(lb)} layers, {what} {mean:.3f}, {seconds:.1f} s) in {cfg.store}"
    )
