"""A pass's per-image outputs staged on disk, one folder per shard, and merged back.

A distributed run (``torchrun``) or a scheduler's ``--shard i/n`` job evaluates one shard of
a dataset's samples; its outputs (per (model, view): the sample indices and every
logits-derived array of :class:`~beyond_inet.run.engine.LogitOutputs`; the full logits where
the pass keeps them) are written to

    <store>.staging/pass-<key>/shard-<i>-of-<n>/outputs-*.parquet, logits-*.npz, meta.json,
    COMPLETE

``COMPLETE`` last, so a shard folder without it (a rank killed mid-write) is never read.
:func:`merge_shards` reads all ``n`` shards and returns the :class:`PassResult` one process
would have produced: outputs concatenated and ordered by sample index. The pass key is the
identity of what was evaluated (the runs' keys and the shard count), so shards of another
configuration are never mixed in.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beyond_inet.records import arrow_column, identity_key, numpy_column
from beyond_inet.run.engine import Features, LogitOutputs, PassResult, Shard
from beyond_inet.run.errors import PrecomputeError

COMPLETE = "COMPLETE"
#: The layout of a staged shard; shards staged by another version are refused, not merged.
SHARD_FORMAT = 3
#: What reading a damaged staged file raises (truncated, emptied, overwritten, deleted).
_DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, pa.ArrowException)


class ShardsIncompleteError(PrecomputeError):
    """Not every shard of a pass is staged (yet)."""


def pass_key(run_keys: Sequence[str], dataset: str, batch_size: int) -> str:
    """The staging identity of one dataset's pass: its runs' keys and the batch size (the
    shards are blocks of it)."""
    return identity_key({"runs": sorted(run_keys), "dataset": dataset, "batch": batch_size}, 20)


def pass_folder(staging: Path, key: str) -> Path:
    """Where the shards of pass ``key`` live."""
    return staging / f"pass-{key}"


def shard_folder(staging: Path, key: str, shard: Shard) -> Path:
    """Where one shard of pass ``key`` is written."""
    return pass_folder(staging, key) / f"shard-{shard.index}-of-{shard.count}"


def _table(model: str, view: str, out: LogitOutputs) -> pa.Table:
    """One (model, view)'s outputs, losslessly (:func:`~beyond_inet.records.arrow_column`)."""
    n = len(out.index)
    cols = {
        f.name: arrow_column(getattr(out, f.name))
        for f in fields(LogitOutputs)
        if getattr(out, f.name) is not None
    }
    cols["model"] = pa.array([model] * n, pa.string())
    cols["view"] = pa.array([view] * n, pa.string())
    return pa.table(cols)


def write_shard(folder: Path, result: PassResult) -> Path:
    """Stage one shard's :class:`PassResult` in ``folder`` (replacing an incomplete one)."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, ((model, view), out) in enumerate(result.outputs.items()):
        if not len(out.index):  # nothing decoded in this shard: the key in meta says so
            continue
        pq.write_table(_table(model, view, out), tmp / f"outputs-{i:04d}.parquet")
    for i, feats in enumerate(result.logits.values()):
        np.savez(tmp / f"logits-{i:04d}.npz", index=feats.index, values=feats.values)
    meta = {
        "format": SHARD_FORMAT,
        "keys": [list(k) for k in result.outputs],
        "rows": [len(out.index) for out in result.outputs.values()],
        "logits": [list(k) for k in result.logits],
        "failed": result.failed,
        "n_images": result.n_images,
        "seconds": result.seconds,
        "decision_labels": list(result.decision_labels) if result.decision_labels else None,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    (tmp / COMPLETE).write_text("")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _outputs(table: pa.Table) -> LogitOutputs:
    names = {f.name for f in fields(LogitOutputs)} & set(table.column_names)
    return LogitOutputs(**{name: numpy_column(table.column(name)) for name in names})


SHARD_NAME = re.compile(r"shard-(\d+)-of-(\d+)")


def staged_shards(folder: Path) -> list[Path]:
    """The complete shard folders of a pass folder (``.partial`` ones never count)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if SHARD_NAME.fullmatch(p.name) and (p / COMPLETE).is_file()
    )


def merge_shards(folder: Path) -> PassResult:
    """The merged :class:`PassResult` of all shards staged under ``folder`` (their count
    from the folder names); raises :class:`ShardsIncompleteError` naming the missing ones."""
    have = {p.name for p in staged_shards(folder)}
    counts = {int(SHARD_NAME.fullmatch(n).group(2)) for n in have}  # type: ignore[union-attr]
    if not have:
        raise ShardsIncompleteError(f"no shard is staged in {folder} (run the --shard jobs first)")
    if len(counts) > 1:
        raise ShardsIncompleteError(
            f"{folder} holds shards of different counts ({sorted(counts)}); delete it and "
            "run the --shard jobs again"
        )
    count = counts.pop()
    missing = [i for i in range(count) if f"shard-{i}-of-{count}" not in have]
    if missing:
        raise ShardsIncompleteError(
            f"{len(missing)} of {count} shards are not staged in {folder} "
            f"(missing: {', '.join(f'{i}/{count}' for i in missing)})"
        )
    parts: dict[tuple[str, str], list[LogitOutputs]] = {}
    logit_parts: dict[tuple[str, str], list[Features]] = {}
    failed: list[tuple[str, str]] = []
    n_images, seconds, labels = 0, 0.0, None
    for i in range(count):
        shard = folder / f"shard-{i}-of-{count}"
        try:
            meta, outs, shard_logits = _read_shard(shard)
        except (
            OSError,
            ValueError,
            KeyError,
            EOFError,
            zipfile.BadZipFile,
            pa.ArrowException,
        ) as e:
            raise ShardsIncompleteError(
                f"{shard} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                f"delete it and run --shard {i}/{count} again"
            ) from None
        failed += [tuple(x) for x in meta["failed"]]  # type: ignore[misc]
        n_images += int(meta["n_images"])
        seconds = max(seconds, float(meta["seconds"]))
        labels = tuple(meta["decision_labels"]) if meta["decision_labels"] else labels
        for k in meta["keys"]:
            parts.setdefault((k[0], k[1]), [])
        for key, out in outs.items():
            parts.setdefault(key, []).append(out)
        for key, feats in shard_logits.items():
            logit_parts.setdefault(key, []).append(feats)
    outputs = {k: _concat(v) for k, v in parts.items()}
    for (model, view), out in outputs.items():
        if len(np.unique(out.index)) != len(out.index):
            raise ShardsIncompleteError(
                f"{folder}: shards overlap for {model} / {view} (staged with other options?); "
                "delete the folder and run the --shard jobs again"
            )
    logits = {}
    for k, feats in logit_parts.items():
        index = np.concatenate([f.index for f in feats])
        order = np.argsort(index, kind="stable")
        logits[k] = Features(index[order], np.concatenate([f.values for f in feats])[order])
    return PassResult(outputs, failed, n_images, seconds, labels, logits=logits)


def _read_shard(
    shard: Path,
) -> tuple[dict, dict[tuple[str, str], LogitOutputs], dict[tuple[str, str], Features]]:  # type: ignore[type-arg]
    """One staged shard: its meta, outputs and logits, checked against what its meta says
    was written (every key's rows: a deleted or truncated file is caught here)."""
    meta = json.loads((shard / "meta.json").read_text())
    if meta.get("format", 1) != SHARD_FORMAT:
        raise ShardsIncompleteError(
            f"{shard} was staged by another version of beyond-inet (shard format "
            f"{meta.get('format', 1)}, this one reads {SHARD_FORMAT}); delete it and run the "
            "--shard jobs again"
        )
    outs: dict[tuple[str, str], LogitOutputs] = {}
    for f in sorted(shard.glob("outputs-*.parquet")):
        t = pq.read_table(f)
        key = (t.column("model")[0].as_py(), t.column("view")[0].as_py())
        outs[key] = _outputs(t)
    decoded = int(meta["n_images"]) - len(meta["failed"])
    expected = meta.get("rows") or [decoded] * len(meta["keys"])
    for (model, view), rows in zip(meta["keys"], expected, strict=True):
        got = len(outs[(model, view)].index) if (model, view) in outs else 0
        if got != rows:
            raise ValueError(f"{model} / {view}: {got} of {rows} images' outputs are there")
    logits = {}
    for j, k in enumerate(meta.get("logits", [])):
        with np.load(shard / f"logits-{j:04d}.npz") as z:
            logits[(k[0], k[1])] = Features(z["index"], z["values"])
    return meta, outs, logits


def _concat(parts: list[LogitOutputs]) -> LogitOutputs:
    if not parts:
        return LogitOutputs.empty()
    joined = {}
    for f in fields(LogitOutputs):
        vals = [getattr(p, f.name) for p in parts]
        joined[f.name] = None if vals[0] is None else np.concatenate(vals)
    order = np.argsort(joined["index"], kind="stable")
    return LogitOutputs(**{k: None if v is None else v[order] for k, v in joined.items()})


def discard(folder: Path) -> None:
    """Remove a pass folder (after its runs are committed, or before a fresh pass)."""
    shutil.rmtree(folder, ignore_errors=True)
