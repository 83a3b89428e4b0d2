"""Frozen features of a model on a dataset split, extracted once and cached on disk.

The cache lives in ``<cache>/features/<key>.npz`` (``--cache-dir``, default
``$BEYOND_INET_CACHE`` or ``~/.cache/beyond_inet``), not in DuckDB. The key is the identity
of what produced the features: the model (name, weights, preprocessing, settings), the
trunk's precision and the split (its name and the fingerprint of its files). Another probe
setting reuses them; a changed file, model or recipe is another key. Files are written to a
temporary name and renamed, so an interrupted extraction leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from beyond_inet.datasets import FoundDataset
from beyond_inet.log import Log
from beyond_inet.models import LoadedModel
from beyond_inet.records import identity_key
from beyond_inet.run.engine import FEATURES, RunSettings, run_pass
from beyond_inet.run.errors import PrecomputeError


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
    return identity_key(payload)


class CacheUnusable(ValueError):
    """A cached feature file that cannot be used as it is (it is extracted again)."""


def _load(path: Path, n_samples: int, width: int) -> SplitFeatures:
    """A cached split's features, checked: every array there and of one length, indices
    of this split's samples without repeats, ``width`` features per image, finite values.
    Raises :class:`CacheUnusable` saying what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            failed = json.loads(str(z["failed"]))
            index, values, labels = z["index"], z["values"], z["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CacheUnusable(f"unreadable ({type(e).__name__})") from None
    if values.ndim != 2 or not len(index) == len(values) == len(labels):
        raise CacheUnusable(f"arrays of mismatched shapes {index.shape}, {values.shape}")
    if len(values) and values.shape[1] != width:
        raise CacheUnusable(f"{values.shape[1]} features per image, the model gives {width}")
    if len(index) and (index.min() < 0 or index.max() >= n_samples):
        raise CacheUnusable(f"sample indices outside 0..{n_samples - 1}")
    if len(np.unique(index)) != len(index) or not np.isfinite(values).all():
        raise CacheUnusable("repeated sample indices or non-finite values")
    return SplitFeatures(index, values, labels, tuple(map(tuple, failed)), 0.0, True)


_WIDTHS: dict[tuple[int, str], int] = {}


def _width(model: LoadedModel, device: str) -> int:
    """How many features ``model`` gives per image (one forward of a blank image, once per
    loaded model and device)."""
    import torch

    from beyond_inet.models.contract import pooled_fp32

    key = (id(model.module), device)
    if key not in _WIDTHS:
        size = model.preprocessing.crop_size
        module = model.module.to(device).eval()
        with torch.inference_mode():
            x = torch.zeros(1, 3, size, size, device=device)
            _WIDTHS[key] = int(pooled_fp32(module, module.trunk(x)).shape[-1])
    return _WIDTHS[key]


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
    if path.exists():
        try:
            if not path.is_file():
                raise CacheUnusable("not a file")
            hit = _load(path, len(found.samples), _width(model, settings.device))
        except CacheUnusable as e:
            log(f"note: cached features {path} are unusable ({e}); extracting them again.")
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        else:
            log(f"features of {model.name} on {found.spec.name}: cached ({path.name})")
            labels = np.array([found.samples[i].label for i in hit.index], dtype=np.int64)
            return replace(hit, labels=labels)  # labels from today's class list
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


def splits_features(
    splits: Mapping[str, FoundDataset],
    model: LoadedModel,
    settings: RunSettings,
    cache: Path,
    log: Log,
    name: str,
    root: Path,
) -> dict[str, SplitFeatures]:
    """:func:`split_features` of every split of a probed dataset (``name``, found in
    ``root``), each undecodable image a warning; raises :class:`PrecomputeError` when train
    or test has no decodable image."""
    feats = {s: split_features(found, model, settings, cache, log) for s, found in splits.items()}
    for s, f in feats.items():
        for sid, err in f.failed:
            log(f"warning: {splits[s].spec.name}: could not decode {sid}: {err}")
    if not len(feats["train"].index) or not len(feats["test"].index):
        raise PrecomputeError(f"{name}: no decodable train or test image in {root}")
    return feats
