"""The Model finder's table logic: the catalogue as one filterable table, measured numbers
beside the published ones, and the commands that measure a shortlist (no Streamlit here)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from beyond_inet import catalog
from dashboard.published import CATALOG_TO_STORE

#: Attribute columns shown first in the table, in order.
ATTRIBUTES = [
    "model",
    "name",
    "library",
    "license",
    "family",
    "training_data",
    "zero_shot",
    "model_type",
    "params_m",
    "gmacs",
    "input_size",
    "crop_pct",
    "interpolation",
    "throughput_gpu",
    "throughput_cpu",
]
#: Human names of attribute columns (axes, filters).
LABELS = {
    "params_m": "params (M)",
    "gmacs": "GMACs",
    "input_size": "input size (px)",
    "throughput_gpu": "img/s, GPU (RTX 4090, AMP)",
    "throughput_cpu": "img/s, CPU (i7-12700H, fp32)",
    "crop_pct": "crop_pct",
    "model_type": "testbed model type",
}
#: Axes where lower is better (for the Pareto front and sorting); also every corruption
#: error column (``... ce``, ``... mean_ce``), see :func:`lower_is_better`.
LOWER_IS_BETTER = frozenset({"params_m", "gmacs"})
#: Result columns that are errors relative to a baseline, not accuracies (ImageNet-C's CE).
ERROR_SUFFIXES = (" mean_ce", " ce")
#: Axes shown on a log scale.
LOG_AXES = frozenset({"params_m", "gmacs", "throughput_gpu", "throughput_cpu"})


def is_log_axis(col: str) -> bool:
    """Axes shown on a log scale: :data:`LOG_AXES` and the measured costs."""
    return col in LOG_AXES or col.startswith(MEASURED_COST)


DEFAULT_X, DEFAULT_Y = "imagenet-val top1", "imagenet-r top1"
KINDS = ("all", "supervised", "zero-shot")


#: Properties listed in every point's hover text (besides its name and the two axes).
HOVER = (
    "library",
    "family",
    "training_data",
    "model_type",
    "zero_shot",
    "params_m",
    "gmacs",
    "input_size",
    "throughput_gpu",
)


def _hover_value(v: object) -> str:
    """A property in a hover line: numbers rounded, missing as a dash."""
    if isinstance(v, float | np.floating):
        return "—" if not np.isfinite(v) else f"{v:,.4g}"
    return str(v)


def shown_name(df: pd.DataFrame) -> pd.Series:
    """Each row's name with the size it was evaluated at (``timm:convnext_base.fb_in22k_ft_in1k
    @288``): timm publishes some weights at two sizes, which are otherwise one name."""
    size = pd.to_numeric(df["eval_size"], errors="coerce")
    at = size.map(lambda v: f" @{int(v)}" if np.isfinite(v) else "")
    return df["name"].astype(str) + at


def hover_text(df: pd.DataFrame) -> pd.Series:
    """One hover string per model: its name in bold, then every :data:`HOVER` property."""
    text = "<b>" + shown_name(df) + "</b>"
    for c in HOVER:
        text = text + f"<br>{label(c)}: " + df[c].map(_hover_value).astype(str)
    return text


@functools.lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    wide = catalog.wide()
    wide = wide.assign(model=shown_name(wide))
    order = [*ATTRIBUTES, *[c for c in wide.columns if c not in ATTRIBUTES]]
    return wide[order].assign(hover=hover_text(wide))


def table() -> pd.DataFrame:
    """Every catalogue model, one row each: attributes, then one column per
    ``<dataset> <metric>`` and ``effective_robustness:<dataset>`` (a copy)."""
    return _table().copy()


#: The store's (dataset, view, metric) keys the finder shows measured values of.
MEASURED_DATASETS = tuple(sorted({d for d, _, _ in CATALOG_TO_STORE.values()}))
MEASURED_METRICS = tuple(sorted({m for _, _, m in CATALOG_TO_STORE.values()}))


def accuracy_columns(df: pd.DataFrame) -> list[str]:
    """The result columns (accuracies 0-1 and effective robustness), ImageNet first."""
    cols = [
        c
        for c in df.columns
        if (" " in c and not c.startswith(MEASURED_COST)) or c.startswith("effective_robustness:")
    ]
    first = [
        c
        for c in (
            "imagenet-val top1",
            "imagenet-val top5",
            "imagenet-real top1",
            "imagenet-v2 top1",
            "imagenet-sketch top1",
            "imagenet-r top1",
            "imagenet-a top1",
            "objectnet top1",
        )
        if c in cols
    ]
    return first + sorted(c for c in cols if c not in first)


#: Prefix of the store's ``--profile`` columns in the finder's table.
MEASURED_COST = "measured cost: "


def axis_columns(df: pd.DataFrame) -> list[str]:
    """Every numeric property an axis can show (measured costs too, where the store has
    ``--profile`` runs)."""
    measured_cost = [
        c
        for c in df.columns
        if c.startswith(MEASURED_COST) and pd.api.types.is_numeric_dtype(df[c])
    ]
    return [
        *accuracy_columns(df),
        "params_m",
        "gmacs",
        "throughput_gpu",
        "throughput_cpu",
        *measured_cost,
        "input_size",
    ]


def label(col: str) -> str:
    """How a column is named on an axis."""
    return LABELS.get(col, col)


def is_accuracy(col: str) -> bool:
    """True for columns holding accuracies in 0-1 (logit axes apply)."""
    return (
        " " in col
        and not col.startswith(MEASURED_COST)
        and not col.startswith("effective_robustness:")
        and not col.endswith(ERROR_SUFFIXES)
    )


def lower_is_better(col: str) -> bool:
    """True for properties where less is better (size, compute, corruption error, measured
    latency and memory)."""
    return (
        col in LOWER_IS_BETTER
        or col.endswith(ERROR_SUFFIXES)
        or (col.startswith(MEASURED_COST) and ("latency" in col or "memory" in col))
    )


@dataclass(frozen=True)
class Filters:
    """What the table keeps (empty tuples / None = no restriction)."""

    libraries: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    training: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()  # imagenet-testbed's grouping (Standard training, ...)
    kind: str = "all"
    params: tuple[float, float] | None = None
    throughput: tuple[float, float] | None = None
    input_sizes: tuple[int, ...] = ()
    text: str = ""
    keep_unknown: bool = True  # a model without the number a range filter reads stays


def unknown_counts(df: pd.DataFrame, f: Filters) -> dict[str, int]:
    """For each range filter in use, how many of ``df``'s models have no number for it
    (kept as unknown, or left out, as ``f.keep_unknown`` says)."""
    out = {}
    for column, bounds in (("params_m", f.params), ("throughput_gpu", f.throughput)):
        if bounds is not None:
            out[column] = int(df[column].isna().sum())
    return out


#: Log-spaced stops of the params and GPU-speed sliders.
PARAM_STOPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SPEED_STOPS = (
    0,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
)


def coverage(df: pd.DataFrame, column: str) -> str:
    """``label (n of N models)``: how many of ``df``'s models have a number for it."""
    n = int(df[column].notna().sum()) if column in df else 0
    return f"{label(column)} ({n:,} of {len(df):,} models)"


def sort_by(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """``df`` sorted by ``column``, best first (lower first where lower is better), models
    without a number last."""
    return df.sort_values(column, ascending=lower_is_better(column), na_position="last")


def apply_filters(df: pd.DataFrame, f: Filters) -> pd.DataFrame:
    """The rows that pass every filter (free text: every word in the name or family). A
    range filter keeps the models without its number when ``f.keep_unknown``."""
    keep = pd.Series(True, index=df.index)
    for column, values in (
        ("library", f.libraries),
        ("family", f.families),
        ("training_data", f.training),
        ("model_type", f.model_types),
    ):
        if values:
            keep &= df[column].isin(list(values))
    if f.kind != "all":
        keep &= df["zero_shot"] == (f.kind == "zero-shot")
    for column, bounds in (("params_m", f.params), ("throughput_gpu", f.throughput)):
        if bounds is not None:
            inside = df[column].between(*bounds)
            keep &= inside | (df[column].isna() & f.keep_unknown)
    if f.input_sizes:
        keep &= df["input_size"].isin(list(f.input_sizes))
    hay = (df["name"] + " " + df["family"] + " " + df["training_data"]).str.lower()
    for word in f.text.lower().split():
        keep &= hay.str.contains(word, regex=False)
    return df[keep]


def paper_name(name: str, paper_model: str) -> str:
    """The name a measured run of this weight carries: the paper's alias for its models."""
    return paper_model or name


def with_measured(df: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``measured <dataset> <metric>`` columns next to the published ones, for
    the catalogue weights this store has runs of (by name, or the paper's alias).

    ``measured`` is the store's long metrics (model, dataset, view, metric, value)."""
    if measured.empty:
        return df
    keys = pd.DataFrame(
        [(*v, f"measured {d} {m}") for (d, m), v in CATALOG_TO_STORE.items()],
        columns=["dataset", "view", "metric", "col"],
    )
    m = measured.merge(keys, on=["dataset", "view", "metric"])
    if m.empty:
        return df
    wide = m.pivot_table(index="model", columns="col", values="value", aggfunc="first")
    run_name = [paper_name(n, p) for n, p in zip(df["name"], df["paper_model"], strict=True)]
    joined = wide.reindex(run_name)
    joined.index = df.index
    out = df.copy()
    for c in sorted(wide.columns):
        out[c] = joined[c].to_numpy()
    results = accuracy_columns(df)
    attrs = [c for c in df.columns if c not in results]
    return out[attrs + sorted(wide.columns) + results]


def runnable(name: str) -> bool:
    """True for a name ``precompute`` can load (timm / open_clip), False for a model known
    only by its published results (``imagenet-testbed:...``)."""
    return name.partition(":")[0] != catalog.PUBLISHED_ONLY


def with_profiles(df: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``measured cost: ...`` columns (:func:`dashboard.frames.profile_table`:
    img/s at batch 1 and the best batch, latency, peak memory, and the device they were
    measured on) beside timm's published throughput, for the catalogue weights this store
    has ``--profile`` runs of (by name, or the paper's alias)."""
    if profiles.empty:
        return df
    wide = profiles.set_index("model")
    wide.columns = [f"{MEASURED_COST}{c}" for c in wide.columns]
    run_name = [paper_name(n, p) for n, p in zip(df["name"], df["paper_model"], strict=True)]
    joined = wide.reindex(run_name)
    joined.index = df.index
    out = pd.concat([df, joined], axis=1)
    cols = list(df.columns)
    at = cols.index("throughput_cpu") + 1
    return out[[*cols[:at], *wide.columns, *cols[at:]]]


def commands(names: Sequence[str]) -> tuple[str, str, str] | None:
    """(fetch the weights, measure in full, evaluate on your own images) for the loadable
    names of a shortlist (None when there are none)."""
    joined = ",".join(n for n in names if runnable(n))
    if not joined:
        return None
    return (
        f"python -m precompute --fetch-weights --model {joined}",
        f"python -m precompute --model {joined} --preprocessing weights --data-root DIR",
        f"python -m precompute --model {joined} --preprocessing weights --own NAME=PATH",
    )


def pareto(df: pd.DataFrame, x: str, y: str) -> np.ndarray:
    """The Pareto front of two columns (direction per column)."""
    return catalog.pareto_front(
        df[x].to_numpy(float),
        df[y].to_numpy(float),
        not lower_is_better(x),
        not lower_is_better(y),
    )


def fit_for(x: str, y: str) -> catalog.Baseline | None:
    """The baseline fit behind an (<axis> top-1, <shift> top-1) pair of axes, if any: the
    axis ImageNet val or the shift's class-subset val accuracy (``imagenet-a-clean``)."""
    if not x.endswith(" top1") or not y.endswith(" top1"):
        return None
    return catalog.baselines().get((y.rsplit(" ", 1)[0], x.rsplit(" ", 1)[0]))


def selected_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """The model names of a chart selection's points (each point's ``customdata[0]``, as
    :func:`dashboard.figures.finder_scatter` sets it), in order, each once. Points without
    a name (the fit line, the band) are ignored."""
    names = []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, Mapping):  # an array-like that came back as {"0": ..., "1": ...}
            cd = [cd[k] for k in sorted(cd, key=lambda k: int(k))]
        if isinstance(cd, list | tuple) and cd and isinstance(cd[0], str):
            names.append(cd[0])
    return list(dict.fromkeys(names))
