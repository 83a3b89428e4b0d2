"""Frozen features of a model on a dataset split, extracted once and cached on disk.

The cache lives in ``<cache>/features/<key>.npz`` (``--cache-dir``, default
``$BEYOND_INET_CACHE`` or ``~/.cache/beyond_inet``), not in DuckDB. The key is the identity
of what produced the features: the model (name, weights, preprocessing, settings), the
trunk's precision and the split (its name and the fingerprint of its files). Another probe
setting reuses them; a changed file, model or recipe is another key. Files are written to a
temporary name and renamed, so an interrupted extraction leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from beyond_inet.datasets import FoundDataset
from beyond_inet.models import LoadedModel
from beyond_inet.run.engine import FEATURES, RunSettings, run_pass

Log = Callable[[str], None]


@dataclass(frozen=True)
class SplitFeatures:
    """Features of one split: ``values[i]`` is the image ``index[i]`` of the split's samples
    (undecodable images are absent), with its label; ``seconds`` of extraction (0 = cached)."""

    index: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    failed: tuple[tuple[str, str], ...]
    seconds: float = 0.0
    cached: bool = False


def feature_key(model: LoadedModel, found: FoundDataset, precision: str) -> str:
    """The cache key of ``model``'s features on ``found`` at ``precision``."""
    payload = {
        "model": model.name,
        "weights": model.weights,
        "preprocessing": model.preprocessing.to_dict(),
        "settings": {k: v for k, v in model.settings.items() if k != "head_cache"},
        "precision": precision,
        "dataset": found.spec.name,
        "content": found.fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _load(path: Path) -> SplitFeatures | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            failed = json.loads(str(z["failed"]))
            return SplitFeatures(
                z["index"], z["values"], z["labels"], tuple(map(tuple, failed)), 0.0, True
            )
    except (OSError, ValueError, KeyError):
        return None  # unreadable cache file: extract again


def split_features(
    found: FoundDataset,
    model: LoadedModel,
    settings: RunSettings,
    cache: Path,
    log: Log = print,
) -> SplitFeatures:
    """``model``'s pre-logits features of every image of ``found`` (the engine's
    ``features`` channel), from the cache when there."""
    path = cache / "features" / f"{feature_key(model, found, settings.precision)}.npz"
    if path.is_file() and (hit := _load(path)) is not None:
        log(f"features of {model.name} on {found.spec.name}: cached ({path.name})")
        labels = np.array([found.samples[i].label for i in hit.index], dtype=np.int64)
        return replace(hit, labels=labels)  # labels from today's class list, not the cache's
    result = run_pass(found, [model], settings, channels=(FEATURES,))
    feats = result.features.get((model.name, "standard"))
    if feats is None:
        index, values = np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    else:
        index, values = feats.index, feats.values.astype(np.float32)
    labels = np.array([found.samples[i].label for i in index], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, index=index, values=values, labels=labels, failed=json.dumps(result.failed))
    os.replace(tmp, path)
    return SplitFeatures(index, values, labels, tuple(result.failed), result.seconds)
