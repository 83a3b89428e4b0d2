"""The records a run is made of, each defined once: the per-image record, a metric row and
the run. The store's Arrow schema and DDL, the synthetic stores and the tests derive from
these definitions (no other module writes out their columns)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

T = TypeVar("T")

#: Version of the store layout these records make (see ``beyond_inet.store``).
SCHEMA_VERSION = 5


def identity_key(payload: dict[str, Any], length: int = 24) -> str:
    """The identity of a run, pass or cache entry: a hash of everything that defines it
    (``payload``, JSON with sorted keys). Every stored run key is made here."""
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _col(arrow: pa.DataType, doc: str, nullable: bool = False, default: Any = MISSING) -> Any:
    meta = {"arrow": arrow, "nullable": nullable, "doc": doc}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


@dataclass(frozen=True)
class ImageRecords:
    """One (model, dataset, view)'s per-image outputs as aligned arrays (length N), one
    array per stored column of ``predictions``. Optional columns are ``None`` when the
    dataset has no such value (then NULL in the store)."""

    sample_id: np.ndarray = _col(pa.string(), "path relative to the dataset root")
    label: np.ndarray = _col(pa.int32(), "ImageNet-1k label; -1 (NULL) = none", nullable=True)
    pred: np.ndarray = _col(pa.int32(), "top-1 class (ImageNet-1k index)")
    confidence: np.ndarray = _col(pa.float32(), "max softmax probability")
    p_true: np.ndarray = _col(pa.float32(), "probability of the (first) label", nullable=True)
    correct: np.ndarray = _col(pa.bool_(), "correct (dataset rule: any label / the decision)")
    topk_idx: np.ndarray = _col(pa.list_(pa.int32()), "the top-5 classes, [N, 5]")
    topk_prob: np.ndarray = _col(pa.list_(pa.float32()), "their probabilities, [N, 5]")
    brier: np.ndarray = _col(pa.float32(), "multiclass Brier term", nullable=True)
    decision: np.ndarray | None = _col(
        pa.string(), "the dataset's own decision (cue-conflict category)", True, None
    )
    pred_full: np.ndarray | None = _col(
        pa.int32(), "plain 1000-way argmax where softmax runs over a class subset", True, None
    )
    factor_value: np.ndarray | None = _col(
        pa.string(), "per-image factor level (PUG value, ImageNet-Hard origin)", True, None
    )
    max_logit: np.ndarray | None = _col(
        pa.float32(), "the largest logit (the max-logit OOD score)", True, None
    )
    logsumexp: np.ndarray | None = _col(
        pa.float32(),
        "log-sum-exp of the logits: the negative energy (the energy OOD score)",
        True,
        None,
    )
    confidence_ts: np.ndarray | None = _col(
        pa.float32(), "max softmax probability after temperature scaling", True, None
    )
    p_true_ts: np.ndarray | None = _col(
        pa.float32(), "probability of the label after temperature scaling", True, None
    )
    brier_ts: np.ndarray | None = _col(
        pa.float32(), "multiclass Brier term after temperature scaling", True, None
    )

    def __len__(self) -> int:
        return len(self.sample_id)

    def take(self, mask: np.ndarray) -> ImageRecords:
        """The rows where ``mask`` is true (or at the given positions)."""
        return ImageRecords(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask]
                for f in fields(self)
            }
        )


#: Columns that identify a prediction row besides the record itself.
KEY_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("run_id", pa.string()),
    ("model", pa.string()),
    ("dataset", pa.string()),
    ("view", pa.string()),
)


def prediction_schema() -> pa.Schema:
    """The ``predictions`` table: the key columns, then every :class:`ImageRecords` field."""
    cols = [*KEY_COLUMNS, *((f.name, f.metadata["arrow"]) for f in fields(ImageRecords))]
    return pa.schema(cols)


PREDICTION_SCHEMA = prediction_schema()


def arrow_column(
    values: np.ndarray | None, typ: pa.DataType | None = None, n: int | None = None
) -> pa.Array:
    """One per-image column as Arrow: [N, K] arrays as lists. With a store type ``typ``:
    cast to it, negative integers (a missing label) and non-finite floats as NULL, None /
    NaN strings as NULL, ``None`` as all NULL (``n`` rows). Without ``typ``: lossless, in
    the array's own dtype (staged shards; :func:`numpy_column` reads it back)."""
    if typ is None:
        v = np.asarray(values)
        if v.ndim == 2:
            flat = pa.array(v.reshape(-1))
            return pa.FixedSizeListArray.from_arrays(flat, v.shape[1])
        return pa.array(v.astype(str) if v.dtype == object else v)
    n = len(values) if n is None and values is not None else n
    if values is None:
        return pa.nulls(n, typ)
    if pa.types.is_list(typ):
        v = np.asarray(values)
        k = v.shape[1] if v.ndim == 2 else 0
        flat = pa.array(v.reshape(-1).astype(typ.value_type.to_pandas_dtype()), type=typ.value_type)
        return pa.ListArray.from_arrays(
            pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), flat
        )
    if pa.types.is_string(typ):
        v = np.asarray(values, dtype=object)
        return pa.array(v.astype(str), pa.string(), mask=np.asarray(pd.isna(v), dtype=bool))
    if pa.types.is_integer(typ):
        v = np.asarray(values)
        return pa.array(v.astype(np.int32), typ, mask=v < 0)
    if pa.types.is_floating(typ):
        v = np.asarray(values, dtype=np.float64)
        return pa.array(v.astype(np.float32), typ, mask=~np.isfinite(v))
    return pa.array(np.asarray(values).astype(bool), typ)


def numpy_column(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A lossless :func:`arrow_column` back as numpy (fixed-size lists as [N, K])."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(col.type):
        return np.asarray(col.flatten()).reshape(len(col), col.type.list_size)
    if pa.types.is_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def record_from(cls: type[T], own: Mapping[str, Any], derived: Any) -> T:
    """A record of type ``cls`` from the fields its maker sets itself (``own``) and, by
    name, every other field of ``cls`` that ``derived`` (a record or a mapping of the
    engine's per-image outputs) has: the shared fields are never copied one by one."""
    get = derived.get if isinstance(derived, Mapping) else lambda k: getattr(derived, k, None)
    rest = {f.name: get(f.name) for f in fields(cls) if f.name not in own}
    return cls(**own, **{k: v for k, v in rest.items() if v is not None})


def to_arrow(rec: ImageRecords, run_id: str, model: str, dataset: str, view: str) -> pa.Table:
    """Per-image rows for the store (Arrow, bulk-inserted), typed by :data:`PREDICTION_SCHEMA`."""
    n = len(rec)
    keys = dict(zip([c for c, _ in KEY_COLUMNS], (run_id, model, dataset, view), strict=True))
    cols = {k: pa.array([v] * n, pa.string()) for k, v in keys.items()}
    for f in fields(ImageRecords):
        cols[f.name] = arrow_column(getattr(rec, f.name), f.metadata["arrow"], n)
    return pa.table(cols, schema=PREDICTION_SCHEMA)


# --------------------------------------------------------------------------- metric rows


@dataclass(frozen=True)
class MetricRow:
    """A metric value with its 95% interval (NaN where none is computed)."""

    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan


#: The dataset name of ``--profile`` runs (metrics only, no per-image rows) and their views:
#: the batch-1 measurement and the fastest batch size's.
PROFILE_DATASET = "profile"
PROFILE_VIEWS = ("batch1", "best")

METRIC_COLUMNS: tuple[str, ...] = (
    "run_id",
    "model",
    "dataset",
    "view",
    *(f.name for f in fields(MetricRow)),
)


def metrics_frame(
    run_id: str, model: str, dataset: str, scored: Sequence[tuple[str, MetricRow]]
) -> pd.DataFrame:
    """A run's (view, metric row) pairs as the store's ``metrics`` rows."""
    rows = [
        {
            "run_id": run_id,
            "model": model,
            "dataset": dataset,
            "view": view,
            **{f.name: getattr(r, f.name) for f in fields(MetricRow)},
        }
        for view, r in scored
    ]
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


# --------------------------------------------------------------------------- runs


class SqlRecord:
    """A record that is one row of a store table (its fields declared with ``_sql``)."""

    def row(self) -> dict[str, Any]:
        """The record as one row (column -> value)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def sql_columns(record: type) -> tuple[tuple[str, str], ...]:
    """A record class's (column, SQL type) pairs, in field order: its table's DDL."""
    return tuple((f.name, f.metadata["sql"]) for f in fields(record))


def _sql(kind: str, doc: str, default: Any = MISSING) -> Any:
    meta = {"sql": kind, "doc": doc}
    return field(metadata=meta) if default is MISSING else field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunRecord(SqlRecord):
    """One finished (model, dataset) run and everything that defines its numbers."""

    run_id: str = _sql("VARCHAR PRIMARY KEY", "unique id")
    run_key: str = _sql("VARCHAR NOT NULL", "identity: skip-if-done and --force match on it")
    model: str = _sql("VARCHAR NOT NULL", "the model's name")
    model_label: str = _sql("VARCHAR", "the paper's label, else the name")
    dataset: str = _sql("VARCHAR NOT NULL", "the dataset's name")
    status: str = _sql("VARCHAR NOT NULL", "'finished' (only finished runs are written)")
    weights: str = _sql("VARCHAR NOT NULL", "hub id, checkpoint:sha256:<hex> or random")
    random_weights: bool = _sql("BOOLEAN NOT NULL", "numbers meaningless (random / synthetic)")
    preprocessing: str = _sql("VARCHAR NOT NULL", "the recipe used, JSON")
    views: str = _sql("VARCHAR NOT NULL", "the transform views, JSON")
    settings: str = _sql("VARCHAR", "head, logit scale, templates, ..., JSON")
    dataset_root: str | None = _sql("VARCHAR", "the folder evaluated")
    sample_limit: int | None = _sql("INTEGER", "--limit")
    n_samples: int = _sql("INTEGER NOT NULL", "images evaluated")
    n_failed: int = _sql("INTEGER NOT NULL", "images that could not be decoded")
    failed: str = _sql("VARCHAR", "those images and errors, JSON")
    started_at: datetime | None = _sql("TIMESTAMP", "UTC")
    finished_at: datetime | None = _sql("TIMESTAMP", "UTC")
    seconds: float = _sql("DOUBLE", "wall time of the pass")
    device: str = _sql("VARCHAR", "cpu / cuda / synthetic")
    precision: str = _sql("VARCHAR", "fp32 / bf16 (the trunk)")
    code_version: str = _sql("VARCHAR", "package version + git commit")
    library_versions: str = _sql("VARCHAR", "torch, torchvision and the family's, JSON")


RUN_COLUMNS = sql_columns(RunRecord)


# --------------------------------------------------------------------------- CKA runs


@dataclass(frozen=True)
class CkaRunRecord(SqlRecord):
    """One finished CKA run: the pair of models, the images, how taps were pooled."""

    run_id: str = _sql("VARCHAR PRIMARY KEY", "unique id")
    run_key: str = _sql("VARCHAR NOT NULL", "identity: skip-if-done and --force match on it")
    model_a: str = _sql("VARCHAR NOT NULL", "the model whose taps are the rows")
    model_b: str = _sql("VARCHAR NOT NULL", "the model whose taps are the columns")
    dataset: str = _sql("VARCHAR NOT NULL", "the dataset the images come from")
    n_images: int = _sql("INTEGER NOT NULL", "images in the estimate")
    tokens: str = _sql("VARCHAR NOT NULL", "token pooling: mean (patch tokens) or cls")
    layers_a: str = _sql("VARCHAR NOT NULL", "model A's tap names, JSON")
    layers_b: str = _sql("VARCHAR NOT NULL", "model B's tap names, JSON")
    weights_a: str = _sql("VARCHAR NOT NULL", "model A's weights")
    weights_b: str = _sql("VARCHAR NOT NULL", "model B's weights")
    random_weights: bool = _sql("BOOLEAN NOT NULL", "either model has random weights")
    preprocessing_a: str = _sql("VARCHAR NOT NULL", "model A's recipe, JSON")
    preprocessing_b: str = _sql("VARCHAR NOT NULL", "model B's recipe, JSON")
    dataset_root: str | None = _sql("VARCHAR", "the folder evaluated")
    estimator: str = _sql("VARCHAR NOT NULL", "what was computed")
    batch_size: int = _sql("INTEGER NOT NULL", "images per minibatch of the estimator")
    started_at: datetime | None = _sql("TIMESTAMP", "UTC")
    finished_at: datetime | None = _sql("TIMESTAMP", "UTC")
    seconds: float = _sql("DOUBLE", "wall time")
    device: str = _sql("VARCHAR", "cpu / cuda")
    precision: str = _sql("VARCHAR", "fp32 / bf16 (the trunks)")
    code_version: str = _sql("VARCHAR", "package version + git commit")
    library_versions: str = _sql("VARCHAR", "torch, torchvision and the families', JSON")


CKA_RUN_COLUMNS = sql_columns(CkaRunRecord)

#: The ``cka`` table: one row per (run, tap of A, tap of B).
CKA_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("row", pa.int32()),
        ("col", pa.int32()),
        ("layer_a", pa.string()),
        ("layer_b", pa.string()),
        ("cka", pa.float32()),
    ]
)


def cka_cells(
    run_id: str, matrix: np.ndarray, layers_a: Sequence[str], layers_b: Sequence[str]
) -> pa.Table:
    """A CKA matrix ``[len(layers_a), len(layers_b)]`` as the store's cells."""
    rows, cols = np.indices(matrix.shape)
    r, c = rows.reshape(-1), cols.reshape(-1)
    return pa.table(
        {
            "run_id": pa.array([run_id] * r.size, pa.string()),
            "row": pa.array(r.astype(np.int32)),
            "col": pa.array(c.astype(np.int32)),
            "layer_a": pa.array([layers_a[i] for i in r], pa.string()),
            "layer_b": pa.array([layers_b[j] for j in c], pa.string()),
            "cka": pa.array(
                matrix.reshape(-1).astype(np.float32), mask=~np.isfinite(matrix.reshape(-1))
            ),
        },
        schema=CKA_SCHEMA,
    )


# --------------------------------------------------------------------------- paired comparisons


@dataclass(frozen=True)
class PairedRecord(SqlRecord):
    """The paired comparison of two runs of one pass on one view (``paired`` table): the
    2x2 table of per-image correctness, McNemar's exact p-value, the accuracy difference
    (A minus B) with its paired bootstrap interval, and the error consistency."""

    run_a: str = _sql("VARCHAR NOT NULL", "model A's run")
    run_b: str = _sql("VARCHAR NOT NULL", "model B's run")
    model_a: str = _sql("VARCHAR NOT NULL", "model A")
    model_b: str = _sql("VARCHAR NOT NULL", "model B")
    dataset: str = _sql("VARCHAR NOT NULL", "the dataset")
    view: str = _sql("VARCHAR NOT NULL", "the stored view")
    n_images: int = _sql("INTEGER NOT NULL", "images both saw")
    both_right: int = _sql("INTEGER NOT NULL", "images both got right")
    only_a: int = _sql("INTEGER NOT NULL", "A right, B wrong")
    only_b: int = _sql("INTEGER NOT NULL", "A wrong, B right")
    both_wrong: int = _sql("INTEGER NOT NULL", "images both got wrong")
    p_value: float = _sql("DOUBLE", "McNemar's exact two-sided p-value")
    accuracy_diff: float = _sql("DOUBLE", "accuracy of A minus B")
    ci_low: float = _sql("DOUBLE", "paired bootstrap 95% interval, low")
    ci_high: float = _sql("DOUBLE", "paired bootstrap 95% interval, high")
    kappa: float = _sql("DOUBLE", "error consistency (Cohen's kappa)")
    n_boot: int = _sql("INTEGER NOT NULL", "bootstrap resamples")


PAIRED_COLUMNS = sql_columns(PairedRecord)
