"""Your own images (``--own NAME=PATH``): which of these models is best on *my* task?

For each model, frozen features of the dataset's train / val / test splits (cached on disk
as for transfer: per model, weights, preprocessing, precision and file fingerprint), then
three ways to classify the test images, each stored as a view of one run on
``own-<name>``:

* ``probe``: the transfer evaluation's linear probe (:func:`~beyond_inet.scoring.probe.fit_probe`:
  C chosen on val, refit on train + val);
* ``knn``: k nearest neighbours on L2-normalised features (:func:`~beyond_inet.scoring.knn.fit_knn`:
  k chosen on val, test votes among train + val);
* ``zero-shot`` (CLIP models): the image embedding against the class names' text
  embeddings (open_clip's recipe, the OpenAI templates; names and templates recorded).

Every view is scored like any run (top-1, balanced accuracy = mean per-class accuracy,
calibration with intervals) and temperature-scaled: a temperature fitted on the val split's
predictions (the probe and kNN as fitted on train alone, before the refit) is applied to
test. The paired comparisons (McNemar, paired bootstrap) of every pair of models on the same
test images are stored as for any pass.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import torch

from beyond_inet.datasets.own import SPLITS, OwnData, load_own
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import (
    ImageRecords,
    RunRecord,
    identity_key,
    metrics_frame,
    record_from,
    to_arrow,
)
from beyond_inet.run.commit import RunSummary, commit_staged_runs, fill_pairs
from beyond_inet.run.engine import SCALED, score_logits
from beyond_inet.run.features import SplitFeatures, splits_features
from beyond_inet.run.plan import PrecomputeConfig, load_models
from beyond_inet.run.provenance import model_provenance, utc_now
from beyond_inet.scoring import temperature as ts
from beyond_inet.scoring.evaluations import score_view
from beyond_inet.scoring.knn import K_GRID, fit_knn, vote_logits
from beyond_inet.scoring.probe import fit_probe
from beyond_inet.settings import cache_dir
from beyond_inet.store import Store

#: The methods (stored views), in this order.
METHODS = ("probe", "knn", "zero-shot")
#: What every method's test predictions are scored with.
OWN_EVALUATIONS = ("accuracy", "per_class", "calibration")
#: The zero-shot prompt templates: OpenAI's 80 ImageNet templates, as open_clip has them.
TEMPLATES = "openai-80"


@dataclass(frozen=True)
class MethodOutput:
    """One method's logits on val and test (rows: the splits' decodable images) and what
    it chose (recorded in the run's settings)."""

    val_logits: np.ndarray
    test_logits: np.ndarray
    settings: dict[str, object]


def is_zero_shot(model: LoadedModel) -> bool:
    """Whether ``model`` can classify by text (a CLIP model with a text head)."""
    return "text_labels" in model.module.capabilities


def own_key(model: LoadedModel, od: OwnData, cfg: PrecomputeConfig) -> str:
    """An own-dataset run's identity: model, weights, preprocessing, precision, the
    images and their split, the class names, the methods' settings."""
    payload = {
        "kind": "own",
        "model": model.name,
        "weights": model.weights,
        "preprocessing": model.preprocessing.to_dict(),
        "settings": {k: v for k, v in model.settings.items() if k != "head_cache"},
        "precision": cfg.run.precision,
        "dataset": od.stored,
        "content": od.fingerprint(),
        "split": od.protocol(),
        "classes": list(od.classes),
        "names": list(od.names) if is_zero_shot(model) else None,
        "probe": cfg.probe.to_dict(),
        "knn": list(K_GRID),
        "templates": TEMPLATES if is_zero_shot(model) else None,
    }
    return identity_key(payload)


def _log_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities, finite (a class absent from training has probability 0)."""
    return np.log(np.clip(probs, 1e-12, 1.0))


def probe_method(feats: dict[str, SplitFeatures], n_classes: int, cfg: PrecomputeConfig):
    """The linear probe's val (fitted on train) and test (refit on train + val) logits."""
    result = fit_probe(
        (feats["train"].values, feats["train"].labels),
        (feats["val"].values, feats["val"].labels),
        feats["test"].values,
        n_classes,
        cfg.probe,
    )
    val = result.val_probs if result.val_probs is not None else np.zeros((0, n_classes))
    settings = {
        "chosen_c": result.c,
        "val_top1": {f"{c:g}": v for c, v in result.val_top1.items()},
        "fits_at_iteration_cap": int(result.extra.get("fits_at_iteration_cap", 0)),
        "seconds": round(result.seconds, 2),
    }
    return MethodOutput(_log_probs(val), _log_probs(result.probs), settings)


def knn_method(feats: dict[str, SplitFeatures], n_classes: int) -> MethodOutput:
    """kNN's val (train neighbours) and test (train + val neighbours) logits."""
    result = fit_knn(
        (feats["train"].values, feats["train"].labels),
        (feats["val"].values, feats["val"].labels),
        feats["test"].values,
        n_classes,
    )
    settings = {
        "chosen_k": result.k,
        "val_top1": {str(k): v for k, v in result.val_top1.items()},
        "probabilities": "vote shares with one pseudo-vote spread over the classes",
        "seconds": round(result.seconds, 2),
    }
    return MethodOutput(
        vote_logits(result.val_probs, result.k), vote_logits(result.probs, result.k), settings
    )


def zero_shot_method(
    feats: dict[str, SplitFeatures], model: LoadedModel, names: Sequence[str]
) -> MethodOutput:
    """CLIP zero-shot logits (``logit_scale * norm(image) @ text head``) of val and test."""
    from beyond_inet.reference import openai_templates

    templates = openai_templates()
    head = model.module.text_head_for(list(names), list(templates)).numpy().astype(np.float64)
    scale = float(model.module.logit_scale)

    def logits(x: np.ndarray) -> np.ndarray:
        if not len(x):  # a split without a decodable image
            return np.zeros((0, head.shape[1]))
        x = np.asarray(x, np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return scale * x @ head

    settings = {
        "class_names": list(names),
        "templates": TEMPLATES,
        "n_templates": len(templates),
        "logit_scale": scale,
    }
    return MethodOutput(logits(feats["val"].values), logits(feats["test"].values), settings)


def method_records(
    od: OwnData, test: SplitFeatures, out: MethodOutput, val_labels: np.ndarray, device: str
) -> tuple[ImageRecords, dict[str, object]]:
    """The test images' records of one method, with the ``*_ts`` columns at the
    temperature fitted on val (where it is identified), and the temperature's record."""
    labels = torch.from_numpy(np.asarray(test.labels, dtype=np.int64))
    scored = score_logits(torch.from_numpy(out.test_logits).float(), labels, None)
    samples = od.splits["test"].samples
    own = {
        "sample_id": np.array([samples[i].sample_id for i in test.index], dtype=object),
        "label": test.labels,
        "correct": scored["pred"] == test.labels,
        "max_logit": None,  # log-probabilities and vote shares are no logits to score OOD by
        "logsumexp": None,
    }
    rec = record_from(ImageRecords, own, scored)
    fit = len(out.val_logits) and len(out.val_logits) == len(val_labels)
    t, ok = (
        ts.fit_with_identification(out.val_logits, val_labels, device) if fit else (math.nan, False)
    )
    note = {"temperature": t if math.isfinite(t) else None, "fitted_on": "val", "identified": ok}
    if ok:
        scaled = score_logits(torch.from_numpy(out.test_logits / t).float(), labels, None)
        rec = replace(rec, **{f"{k}_ts": scaled[k] for k in SCALED})
    return rec, note


def _features(
    od: OwnData, model: LoadedModel, cfg: PrecomputeConfig, log: Log
) -> dict[str, SplitFeatures]:
    cache = cfg.cache_dir or cache_dir()
    return splits_features(od.splits, model, cfg.run, cache, log, od.source.name, od.root)


def _run_one(
    cfg: PrecomputeConfig, store: Store, od: OwnData, model: LoadedModel, key: str, log: Log
) -> RunSummary:
    started = utc_now()
    feats = _features(od, model, cfg, log)
    outputs = {
        "probe": probe_method(feats, len(od.classes), cfg),
        "knn": knn_method(feats, len(od.classes)),
    }
    if is_zero_shot(model):
        outputs["zero-shot"] = zero_shot_method(feats, model, od.names)
    run_id = uuid.uuid4().hex[:16]
    tables, scored, methods, correct = [], [], {}, {}
    for view, out in outputs.items():
        rec, temp = method_records(od, feats["test"], out, feats["val"].labels, cfg.run.device)
        rows = score_view(rec, OWN_EVALUATIONS, cfg.scoring)
        if temp["temperature"] is not None and temp["identified"]:
            rows += ts.temperature_rows(float(temp["temperature"]))
        scored += [(view, r) for r in rows]
        tables.append(to_arrow(rec, run_id, model.name, od.stored, view))
        methods[view] = {**out.settings, "temperature_scaling": temp}
        correct[view] = rec.correct
        top1 = next(r.value for r in rows if r.metric == "top1")
        log(f"{model.name} on {od.source.name} ({view}): top-1 {top1:.3f}")
    metrics = metrics_frame(run_id, model.name, od.stored, scored)
    failed = [(s, sid, e) for s in SPLITS for sid, e in feats[s].failed]
    settings = {
        **model.settings,
        "own": {
            "name": od.source.name,
            "path": str(od.source.path),
            "layout": od.layout,
            "split": od.protocol(),
            "classes": list(od.classes),
            "content": od.fingerprint(),
            "methods": methods,
            "features_cached": all(feats[s].cached for s in SPLITS),
            "feature_seconds": round(sum(feats[s].seconds for s in SPLITS), 2),
        },
    }
    run = RunRecord(
        run_id=run_id,
        run_key=key,
        dataset=od.stored,
        status="finished",
        views=json.dumps(list(outputs)),
        settings=json.dumps(settings),
        dataset_root=str(od.root.resolve()),
        sample_limit=cfg.limit,
        n_samples=len(feats["test"].index),
        n_failed=len(failed),
        failed=json.dumps([{"sample_id": f"{s}/{i}", "error": e} for s, i, e in failed]),
        started_at=started,
        finished_at=utc_now(),
        seconds=sum(feats[s].seconds for s in SPLITS),
        **model_provenance(cfg, model),
    )
    stored = store.commit_persistently(run, pa.concat_tables(tables), metrics, cfg.force, log)
    headline = {
        f"top1 ({v})": float(
            metrics.loc[(metrics["metric"] == "top1") & (metrics["view"] == v), "value"].iloc[0]
        )
        for v in outputs
    }
    return RunSummary(
        model.name,
        od.stored,
        "done" if stored else "exists",
        len(feats["test"].index),
        len(failed),
        run.seconds,
        headline if stored else {},
        run_id if stored else "",
        correct if stored else {},
    )


def find_own(cfg: PrecomputeConfig) -> list[OwnData]:
    """The ``--own`` datasets, checked and split (a bad layout raises, naming the problem)."""
    return [load_own(src, limit=cfg.limit) for src in cfg.own]


def run_own(cfg: PrecomputeConfig, log: Log = print) -> list[RunSummary]:
    """Evaluate every selected model on every ``--own`` dataset; store finished runs and
    the paired comparisons of the models evaluated together."""
    store = Store(cfg.store)
    store.check_writable()
    commit_staged_runs(store, log)
    datasets = find_own(cfg)
    for od in datasets:
        sizes = "/".join(str(n) for n in od.sizes().values())
        log(
            f"{od.source.name}: {len(od.classes)} classes, train/val/test {sizes} "
            f"({od.layout}, split {od.split_rule})"
        )
    models = load_models(cfg, log)
    summaries = []
    for od in datasets:
        for m in models:
            key = own_key(m, od, cfg)
            if not cfg.force and store.finished_run(key):
                log(f"skip {m.name} on {od.stored}: already in {cfg.store} (--force redoes)")
                summaries.append(RunSummary(m.name, od.stored, "skipped"))
                continue
            summaries.append(_run_one(cfg, store, od, m, key, log))
            log(f"stored {m.name} on {od.stored} in {cfg.store}")
        fill_pairs(store, od.stored, same_content_runs(store, od), cfg.scoring, log)
    return summaries


def same_content_runs(store: Store, od: OwnData) -> list[tuple[str, str]]:
    """(model, run id) of each model's latest finished run on ``od`` as it is now (the
    same images, split and labels): the runs whose paired comparisons belong together,
    whichever invocation stored them."""
    runs = store.query(
        "SELECT model, run_id, settings FROM runs WHERE dataset = ? AND status = 'finished' "
        "ORDER BY finished_at DESC, run_id",
        [od.stored],
    )
    out: dict[str, str] = {}
    for r in runs.itertuples():
        content = json.loads(r.settings).get("own", {}).get("content")
        if content == od.fingerprint() and r.model not in out:
            out[r.model] = r.run_id
    return sorted(out.items())
