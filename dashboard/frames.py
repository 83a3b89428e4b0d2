"""Pure pandas steps between the queries and the figures: combine measured and published
numbers, build the Overview table and the ranking.

Every function takes and returns DataFrames (no Streamlit, no I/O), so they are unit-tested.
A *combined* frame has the store's long format plus ``source`` (``measured`` | ``published``),
``random_weights`` and ``display`` (the model name, marked when its weights are random).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from beyond_inet.scoring import metrics as M
from beyond_inet.scoring.metric_specs import spec as metric_spec
from dashboard.published import ROBUSTNESS_AVERAGE, ROBUSTNESS_BENCHMARKS

SOURCES = ("both", "measured", "published")
RANDOM_MARK = " ⚠ random weights"
MEANINGLESS_NOTE = (
    "⚠ Some runs use RANDOM weights or SYNTHETIC numbers (smoke tests, demo "
    "stores): their numbers mean nothing."
)
COMBINED_COLUMNS = [
    "model",
    "dataset",
    "view",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "source",
    "random_weights",
    "display",
    "detail",
    "origin",
]
#: How a missing value is shown in tables.
MISSING = "—"
#: Where a row's number comes from, as the Overview names it.
MEASURED_ORIGIN = "measured here"
PAPER_ORIGIN = "paper"
#: Published provenances that name a library (the model catalogue's rows).
LIBRARY_ORIGINS = ("timm", "open_clip", "imagenet-testbed")
INVARIANCE_FAMILIES = ("scale", "shift", "resolution")
_FAMILY_VIEW = re.compile(r"^(?P<family>[A-Za-z_]+):(?P<value>.+)$")


@dataclass(frozen=True)
class Property:
    """One Overview column: where its number lives and the range it is scored on for
    profiles and rankings: ``scale = (lo, hi)`` is the property's meaningful range
    (accuracies 0-1); ``hi=None`` means 0 .. the largest value shown (ECE, error ratios have
    no fixed top). Its direction and unit come from the metric catalogue."""

    title: str
    dataset: str
    metric: str
    help: str
    scale: tuple[float, float | None] = (0.0, 1.0)

    @property
    def higher_is_better(self) -> bool:
        """The catalogue's direction (a descriptive metric counts as higher-is-better)."""
        return metric_spec(self.metric).higher_is_better is not False

    @property
    def percent(self) -> bool:
        """Shown in % (the catalogue's unit)."""
        return metric_spec(self.metric).percent


PROPERTIES: tuple[Property, ...] = (
    Property("ImageNet top-1", "imagenet-val", "top1", "ImageNet-1k val accuracy"),
    Property(
        "ECE",
        "imagenet-val",
        "ece",
        "expected calibration error on ImageNet val (15 bins), lower is better",
        (0.0, None),
    ),
    Property(
        "ImageNet-X error ratio",
        "imagenet-val",
        "error_ratio_mean",
        "mean over the 16 ImageNet-X factors of (factor error / overall error); lower is better",
        (0.0, None),
    ),
    Property(
        "Shape bias",
        "cue-conflict",
        "shape_bias",
        "fraction of shape decisions on cue-conflict images (humans: 0.96)",
    ),
    Property(
        "Robustness avg",
        *ROBUSTNESS_AVERAGE,
        "mean top-1 over ImageNet-V2, ReaL, Sketch, R, A, C and Hard (the paper's average)",
    ),
    Property(
        "Invariance",
        "invariance",
        "agreement_mean",
        "mean agreement with the standard view over the scale, shift and resolution views",
    ),
    Property(
        "PUG-ImageNet",
        "pug-imagenet",
        "top1_mean",
        "mean top-1 over the PUG-ImageNet factor subsets",
    ),
    Property(
        "Transfer (VTAB)",
        "vtab",
        "top1_vtab",
        "mean linear-probe top-1 over the VTAB tasks present (the paper: all 19)",
    ),
)


def display_name(model: str, random_weights: bool) -> str:
    """The model name as shown everywhere: marked when its weights are random."""
    return f"{model}{RANDOM_MARK}" if random_weights else model


def _prepared(df: pd.DataFrame, source: str) -> pd.DataFrame:
    out = df.copy()
    out["source"] = source
    out["random_weights"] = out.get("random_weights", False)
    out["random_weights"] = out["random_weights"].fillna(False).astype(bool)
    if "detail" not in out:
        out["detail"] = None
    out["display"] = [
        display_name(m, r) for m, r in zip(out["model"], out["random_weights"], strict=True)
    ]
    if source == "measured":
        out["origin"] = MEASURED_ORIGIN
    else:
        prov = out["provenance"] if "provenance" in out else pd.Series("", index=out.index)
        out["origin"] = [p if p in LIBRARY_ORIGINS else PAPER_ORIGIN for p in prov.fillna("")]
    return out.reindex(columns=COMBINED_COLUMNS)


def combine(
    measured: pd.DataFrame,
    published: pd.DataFrame,
    source: str,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Measured (as read, with the summaries :func:`dashboard.queries.metrics` derives in
    SQL) and/or published rows, per ``source`` (``both`` | ``measured`` | ``published``),
    restricted to ``models`` when given."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if models is not None:
        measured = measured[measured["model"].isin(list(models))]
        published = (
            published[published["model"].isin(list(models))] if len(published) else published
        )
    parts = []
    if source in ("both", "measured") and len(measured):
        parts.append(_prepared(measured, "measured"))
    if source in ("both", "published") and len(published):
        parts.append(_prepared(published, "published"))
    if not parts:
        return pd.DataFrame(columns=COMBINED_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    for c in ("value", "ci_low", "ci_high"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.reset_index(drop=True)


def pick(
    combined: pd.DataFrame, dataset: str, metric: str | None = None, view: str | None = "standard"
) -> pd.DataFrame:
    """Rows of one dataset (and metric / view when given)."""
    m = combined["dataset"] == dataset
    if metric is not None:
        m &= combined["metric"] == metric
    if view is not None:
        m &= combined["view"] == view
    return combined[m]


def row_label(display: str, source: str, both: bool) -> str:
    """A table row's name: the model, and its source when both sources are shown."""
    return f"{display} ({source})" if both else display


def series_labels(df: pd.DataFrame) -> list[str]:
    """Each row's table column name: :func:`row_label` of its model, with the source when
    ``df`` holds both."""
    both = df["source"].nunique() > 1
    return [row_label(a, s, both) for a, s in zip(df["display"], df["source"], strict=True)]


def format_value(value: float, lo: float, hi: float, percent: bool) -> str:
    """``85.3 [84.9, 85.7]`` (percent) or ``0.041 [0.038, 0.044]``; ``—`` when missing."""
    if value is None or not np.isfinite(value):
        return MISSING
    f = (lambda x: f"{100 * x:.1f}") if percent else (lambda x: f"{x:.3f}")
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{f(value)} [{f(lo)}, {f(hi)}]"
    return f(value)


def overview(combined: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, text) tables: one row per (model, source), one column per property.

    ``numeric`` holds the values (NaN where missing, plus ``model``/``display``/``source``/
    ``random_weights`` columns); ``text`` the formatted values with 95% intervals; both
    indexed by the row label.
    """
    origin = combined["origin"] if "origin" in combined else combined["source"]
    combined = combined.assign(origin=origin.fillna(combined["source"]))
    both = combined["origin"].nunique() > 1
    keys = combined[["model", "display", "source", "random_weights", "origin"]].drop_duplicates(
        ["model", "display", "source"]
    )
    keys = keys.sort_values(["model", "source"]).reset_index(drop=True)
    wanted = {(p.dataset, p.metric) for p in PROPERTIES}
    std = combined[combined["view"] == "standard"]
    std = std[[(d, m) in wanted for d, m in zip(std["dataset"], std["metric"], strict=True)]]
    found: dict[tuple[str, str, str, str, str], tuple[float, float, float]] = {}
    partial: dict[tuple[str, str, str, str, str], str] = {}
    for r in std.itertuples(index=False):
        key = (r.model, r.source, r.display, r.dataset, r.metric)
        found.setdefault(key, (float(r.value), float(r.ci_low), float(r.ci_high)))
        m = _PARTIAL.match(str(r.detail or ""))
        if m and m.group(1) != m.group(2):
            partial.setdefault(key, f" ({m.group(1)}/{m.group(2)})")
    labels = [row_label(d, o, both) for d, o in zip(keys["display"], keys["origin"], strict=True)]
    num = keys.copy()
    num.index = labels
    text = pd.DataFrame(index=labels)
    for p in PROPERTIES:
        cells = [
            found.get((k.model, k.source, k.display, p.dataset, p.metric))
            for k in keys.itertuples(index=False)
        ]
        if all(c is None for c in cells):
            continue
        keyed = [(k.model, k.source, k.display, p.dataset, p.metric) for k in keys.itertuples()]
        # an average over fewer benchmarks is shown, marked, but neither highlighted nor
        # ranked against full ones: it is not the same quantity
        num[p.title] = [
            math.nan if c is None or k in partial else c[0]
            for c, k in zip(cells, keyed, strict=True)
        ]
        text[p.title] = [
            MISSING if c is None else format_value(*c, p.percent) + partial.get(k, "")
            for c, k in zip(
                cells,
                [(k.model, k.source, k.display, p.dataset, p.metric) for k in keys.itertuples()],
                strict=True,
            )
        ]
    return num, text


#: A derived average's detail, ``mean of k of n ...``: shown as ``(k/n)`` beside it.
_PARTIAL = re.compile(r"^mean of (\d+) of (\d+)")


def best_mask(numeric: pd.DataFrame) -> pd.DataFrame:
    """True where a cell holds its column's best value (direction per property)."""
    mask = pd.DataFrame(False, index=numeric.index, columns=numeric.columns)
    for p in PROPERTIES:
        if p.title in numeric:
            col = numeric[p.title]
            if col.notna().any():
                best = col.max() if p.higher_is_better else col.min()
                mask[p.title] = col == best
    return mask


def normalised(numeric: pd.DataFrame) -> pd.DataFrame:
    """Each property on its meaningful range (:attr:`Property.scale`): 0 = worst, 1 = best
    (accuracies 0-100 %, shape bias 0-1; ECE and error ratios 0 .. the largest shown, lower
    better), clipped to 0-1; NaN stays NaN. Rows are scored independently of each other,
    so a close race stays close (0.333 vs 0.399 shape bias is 0.33 vs 0.40, not 0 vs 1)."""
    out = pd.DataFrame(index=numeric.index)
    for p in PROPERTIES:
        if p.title not in numeric:
            continue
        col = numeric[p.title].astype(float)
        lo, hi = p.scale[0], p.scale[1] if p.scale[1] is not None else col.max()
        if not np.isfinite(hi) or hi <= lo:
            out[p.title] = col * 0 + 1.0
            continue
        s = ((col - lo) / (hi - lo)).clip(0.0, 1.0)
        out[p.title] = s if p.higher_is_better else 1.0 - s
    return out


def default_weights(numeric: pd.DataFrame) -> dict[str, int]:
    """Starting weights: 1 for each property some real (not random / synthetic) row has —
    a property is never dropped because some models lack it (they are then listed as not
    ranked, with what they miss). With only random rows, the properties they have."""
    real = numeric
    if "random_weights" in numeric and (~numeric["random_weights"].astype(bool)).any():
        real = numeric[~numeric["random_weights"].astype(bool)]
    return {
        p.title: int(bool(real[p.title].notna().any())) for p in PROPERTIES if p.title in numeric
    }


def coverage(numeric: pd.DataFrame) -> dict[str, str]:
    """Per property shown: ``n of N`` rows that have a number for it."""
    return {
        p.title: f"{int(numeric[p.title].notna().sum())} of {len(numeric)}"
        for p in PROPERTIES
        if p.title in numeric
    }


def same_weights(models: Sequence[str]) -> list[tuple[str, str]]:
    """(paper name, catalogue name) pairs of ``models`` that are the same weights (the
    paper's four under their short names and their timm / open_clip names)."""
    from beyond_inet import catalog

    mods = catalog.models()
    alias = mods[mods["paper_model"] != ""].drop_duplicates("name")
    chosen = set(models)
    return [
        (p, n)
        for p, n in zip(alias["paper_model"], alias["name"], strict=True)
        if p in chosen and n in chosen
    ]


def ranking(
    numeric: pd.DataFrame, weights: Mapping[str, float], include_random: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranked, left out). ``ranked``: rows that have every weighted property (weight > 0),
    scored by the weighted mean of their :func:`normalised` values; columns ``score`` (0-1)
    and ``properties``; best first. Rows whose weights are random (or synthetic) are ranked
    only with ``include_random``. ``left out``: the other rows with the ``reason``."""
    norm = normalised(numeric)
    w = pd.Series({k: float(v) for k, v in weights.items() if k in norm and v > 0}, dtype=float)
    random = (
        numeric["random_weights"].fillna(False).astype(bool)
        if "random_weights" in numeric
        else pd.Series(False, index=numeric.index)
    )
    reasons: dict[str, str] = {}
    for label in numeric.index:
        missing = [k for k in w.index if not np.isfinite(norm.loc[label, k])]
        if random.loc[label] and not include_random:
            reasons[label] = "random weights / synthetic numbers (tick the box to include)"
        elif missing:
            reasons[label] = f"missing: {', '.join(missing)}"
    left = pd.DataFrame({"reason": pd.Series(reasons, dtype=object)})
    keep = [i for i in numeric.index if i not in reasons]
    if w.empty:
        return (pd.DataFrame({"score": math.nan, "properties": 0}, index=pd.Index(keep)), left)
    sub = norm.loc[keep, w.index]
    score = (sub * w).sum(axis=1) / w.sum()
    out = pd.DataFrame({"score": score, "properties": len(w)}, index=sub.index)
    return out.sort_values("score", ascending=False, kind="stable"), left


def family_views(df: pd.DataFrame, families: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows whose view is ``<family>:<value>``, with ``family`` and ``x`` (the value, as a
    float where it parses, else the string) columns; only ``families`` when given."""
    parts = df["view"].astype(str).str.extract(_FAMILY_VIEW)
    out = df.assign(family=parts["family"], x_raw=parts["value"])
    out = out[out["family"].notna()]
    if families is not None:
        out = out[out["family"].isin(list(families))]
    out = out.assign(x=pd.to_numeric(out["x_raw"], errors="coerce"))
    return out.sort_values(["family", "x", "x_raw"])


def robustness_table(combined: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, source, benchmark) for the paper's robustness benchmarks, ImageNet
    val and the average: ``display, source, benchmark, value, ci_low, ci_high, detail``."""
    items = [
        ("ImageNet val", "imagenet-val", "top1"),
        *ROBUSTNESS_BENCHMARKS,
        ("Average", *ROBUSTNESS_AVERAGE),
    ]
    rows = []
    for label, dataset, metric in items:
        r = pick(combined, dataset, metric)
        rows.append(r.assign(benchmark=label))
    if not rows:
        return pd.DataFrame()
    out = pd.concat(rows, ignore_index=True)
    order = {b: i for i, (b, _, _) in enumerate(items)}
    out["order"] = out["benchmark"].map(order)
    return out.sort_values(["order", "model", "source"]).drop(columns="order")


def reproduction(combined: pd.DataFrame, published_rows: pd.DataFrame) -> pd.DataFrame:
    """Every published number next to the measured one with the same store key and their
    difference (measured - published, in the published unit)."""
    meas = combined[combined["source"] == "measured"]
    found: dict[tuple[str, str, str, str], tuple[float, bool]] = {}
    for m in meas.itertuples(index=False):
        found.setdefault(
            (m.model, m.dataset, m.view, m.metric), (float(m.value), bool(m.random_weights))
        )
    rows = []
    for r in published_rows.itertuples(index=False):
        hit = found.get((r.model, r.dataset, r.view, r.metric))
        scale = 100.0 if r.unit == "%" else 1.0
        mv = hit[0] * scale if hit else math.nan
        rows.append(
            {
                "model": r.model,
                "paper label": r.paper_label,
                "property": r.property,
                "dataset": r.published_dataset,
                "metric": r.published_metric,
                "setting": r.setting,
                "published": r.published_value,
                "measured": mv,
                "difference": mv - r.published_value,
                "unit": r.unit,
                "random weights": hit[1] if hit else False,
                "store key": f"{r.dataset}/{r.view}/{r.metric}" if r.dataset else "",
                "provenance": r.provenance,
                "source": r.source,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- calibration

#: The reliability bins' columns (:func:`reliability_bins`).
BIN_COLUMNS = ["model", "bin", "count", "n_correct", "accuracy", "mean_confidence"]


def reliability_bins(per_image: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per model (``per_image``: ``model, confidence, correct``) the non-empty bins of
    :func:`beyond_inet.scoring.metrics.calibration_bins` — the bin assignment of the stored
    ECE / MCE — with :data:`BIN_COLUMNS`."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    parts = []
    for model, g in per_image.groupby("model", sort=True):
        b = M.calibration_bins(g["confidence"].to_numpy(), g["correct"].to_numpy(), int(n_bins))
        parts.append(b[b["count"] > 0].assign(model=model))
    if not parts:
        return pd.DataFrame(columns=BIN_COLUMNS)
    return pd.concat(parts, ignore_index=True)[BIN_COLUMNS]


def binned_errors(per_image: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Per model (``per_image``: ``model, confidence, correct``) ``ece``, ``mce`` with
    ``n_bins`` bins (:func:`beyond_inet.scoring.metrics.calibration_errors`, the function of
    the stored numbers) and the image count ``n``."""
    rows = []
    for model, g in per_image.groupby("model", sort=True):
        conf, corr = g["confidence"].to_numpy(np.float64), g["correct"].to_numpy(np.float64)
        ece, mce = M.calibration_errors(conf, corr, int(n_bins))
        rows.append((model, float(ece), float(mce), len(g)))
    return pd.DataFrame(rows, columns=["model", "ece", "mce", "n"])


# --------------------------------------------------------------------------- transfer

#: The derived VTAB summaries (dataset ``vtab``): metric -> the group's label.
VTAB_SUMMARIES = {
    "top1_natural": "natural",
    "top1_specialized": "specialized",
    "top1_structured": "structured",
    "top1_vtab": "all tasks",
}


def vtab_summaries(rows: pd.DataFrame) -> pd.DataFrame:
    """The VTAB means of per-task probe top-1 rows (``vtab-<task>`` / ``standard`` /
    ``top1``; other rows are ignored), measured or published alike: per model (and
    ``source``, where the rows have one) the mean over the tasks present of each group
    (``vtab/top1_<group>``) and of every task (``vtab/top1_vtab``), with ``detail`` ``mean
    of k of n tasks`` (n: the group's tasks, or all 19), no interval, ``random_weights`` when
    any task's are, no ``run_id``."""
    from beyond_inet.datasets.transfer import TASKS

    group = {t.stored: t.group for _, t in TASKS.items()}
    size = pd.Series(group).value_counts()
    keys = ["model", "source"] if "source" in rows else ["model"]
    cols = [*keys, "dataset", "view", "metric", "value", "ci_low", "ci_high", "random_weights",
            "run_id", "detail"]  # fmt: skip
    task = rows["dataset"].isin(list(group)) & (rows["metric"] == "top1")
    d = rows[task & (rows["view"] == "standard")]
    d = d.assign(
        group=d["dataset"].map(group),
        value=pd.to_numeric(d["value"], errors="coerce"),
        random_weights=d.get("random_weights", pd.Series(False, index=d.index))
        .fillna(False)
        .astype(bool),
    )
    out = []
    for key, g in d.groupby(keys, sort=True):
        k = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        parts = [(f"top1_{name}", t, int(size[name])) for name, t in g.groupby("group")]
        parts.append(("top1_vtab", g, len(group)))
        for metric, t, n in parts:
            out.append(
                {
                    **k,
                    "dataset": "vtab",
                    "view": "standard",
                    "metric": metric,
                    "value": float(t["value"].mean()),
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "random_weights": bool(t["random_weights"].any()),
                    "run_id": None,
                    "detail": f"mean of {len(t)} of {n} tasks",
                }
            )
    return pd.DataFrame(out, columns=cols)


def with_vtab_summaries(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with their :func:`vtab_summaries` appended, the one derivation of the VTAB
    means for measured and published numbers; a summary ``rows`` already hold (the paper's
    printed 19-task average) is kept, not derived again."""
    derived = vtab_summaries(rows) if "dataset" in rows else pd.DataFrame()
    if derived.empty:
        return rows
    keys = [c for c in ("model", "source", "dataset", "view", "metric") if c in rows]
    have = set(map(tuple, rows[keys].astype(str).itertuples(index=False)))
    new = [tuple(r) not in have for r in derived[keys].astype(str).itertuples(index=False)]
    derived = derived[new]
    return pd.concat([rows, derived], ignore_index=True) if len(derived) else rows


def transfer_datasets() -> tuple[str, ...]:
    """The stored dataset names of every VTAB task, and the summaries' ``vtab``."""
    from beyond_inet.datasets.transfer import TASKS

    return (*(t.stored for _, t in TASKS.items()), "vtab")


def transfer_table(combined: pd.DataFrame) -> pd.DataFrame:
    """Probe top-1 per task (``view`` standard) with the task's label, group and order."""
    from beyond_inet.datasets.transfer import GROUPS, TASKS

    info = {t.stored: t for _, t in TASKS.items()}
    d = combined[
        combined["dataset"].isin(list(info))
        & (combined["metric"] == "top1")
        & (combined["view"] == "standard")
    ].copy()
    d["task"] = d["dataset"].map(lambda s: info[s].label)
    d["group"] = d["dataset"].map(lambda s: info[s].group)
    d["group_order"] = d["group"].map(GROUPS.index)
    return d.reset_index(drop=True)


def transfer_groups(combined: pd.DataFrame) -> pd.DataFrame:
    """The VTAB group means and overall mean (:func:`with_vtab_summaries` of the measured
    and of the published per-task numbers; published: the paper's printed average where it
    gives one), labelled by group."""
    d = combined[
        (combined["dataset"] == "vtab") & combined["metric"].isin(list(VTAB_SUMMARIES))
    ].copy()
    d["group"] = d["metric"].map(VTAB_SUMMARIES)
    return d.reset_index(drop=True)


#: The OOD scores (:data:`beyond_inet.scoring.ood.SCORES`), as the OOD page labels them.
OOD_SCORE_LABELS: dict[str, str] = {
    "msp": "MSP (max softmax probability)",
    "max_logit": "max logit",
    "energy": "energy (logsumexp of the logits)",
}
#: The OOD detection metrics, as the OOD page labels them (``fpr95``: lower is better).
OOD_METRICS: dict[str, str] = {
    "auroc": "AUROC",
    "fpr95": "FPR@95%TPR",
    "aupr_in": "AUPR-in",
    "aupr_out": "AUPR-out",
}


def ood_table(combined: pd.DataFrame, score: str) -> pd.DataFrame:
    """One row per (model, source, OOD set, metric) of one OOD ``score``
    (``<metric>:<score>`` rows of the sets in :data:`~beyond_inet.datasets.OOD_REPORT`),
    then OpenOOD's group means (``near-OOD mean``, ``far-OOD mean``: the mean over the
    group's sets present, ``detail`` saying how many): ``display, source, model, dataset,
    set, group, metric, value, ci_low, ci_high, detail``, in OpenOOD's order."""
    from beyond_inet.datasets import OOD_REPORT

    label = {s.dataset: s.label for s in OOD_REPORT}
    group = {s.dataset: s.group for s in OOD_REPORT}
    names = {f"{m}:{score}": m for m in OOD_METRICS}
    d = combined[
        combined["dataset"].isin(list(label))
        & combined["metric"].isin(list(names))
        & (combined["view"] == "standard")
    ].copy()
    if d.empty:
        return pd.DataFrame(columns=[*COMBINED_COLUMNS, "set", "group"])
    d["metric"] = d["metric"].map(names)
    d["set"] = d["dataset"].map(label)
    d["group"] = d["dataset"].map(group)
    means = []
    for g in dict.fromkeys(group.values()):
        of = [s.dataset for s in OOD_REPORT if s.group == g]
        if len(of) < 2:
            continue
        part = d[d["group"] == g]
        for _, rows in part.groupby(["model", "source", "metric"]):
            first = rows.iloc[0]
            means.append(
                {
                    **first.to_dict(),
                    "dataset": "",
                    "set": f"{g} mean",
                    "value": rows["value"].mean(),
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "detail": f"mean of {len(rows)} of {len(of)} sets",
                }
            )
    out = pd.concat([d, pd.DataFrame(means)], ignore_index=True) if means else d
    order = [s.label for s in OOD_REPORT]
    order += [f"{g} mean" for g in dict.fromkeys(group.values()) if f"{g} mean" in set(out["set"])]
    out["order"] = out["set"].map({s: i for i, s in enumerate(order)})
    out = out.sort_values(["order", "model", "source"]).drop(columns="order")
    return out.reset_index(drop=True)


def ood_wide(table: pd.DataFrame) -> pd.DataFrame:
    """OOD set x metric rows, one column per model (and source), in % (:func:`ood_table`)."""
    d = table.assign(
        series=series_labels(table),
        value=table["value"] * 100,
        metric=table["metric"].map(OOD_METRICS),
    )
    d["metric_order"] = d["metric"].map({m: i for i, m in enumerate(OOD_METRICS.values())})
    d = d.sort_values("metric_order", kind="stable")  # the sets keep their order
    d["set_order"] = d["set"].map({s: i for i, s in enumerate(dict.fromkeys(table["set"]))})
    wide = d.pivot_table(
        index=["set_order", "set", "metric_order", "metric"],
        columns="series",
        values="value",
        aggfunc="first",
    )
    return wide.round(1).reset_index().drop(columns=["set_order", "metric_order"])


def partial_means(table: pd.DataFrame) -> list[str]:
    """``"<model> <group> mean: mean of k of n sets"`` for each group mean of
    :func:`ood_table` over fewer than all of its group's sets (once per model)."""
    notes = []
    for r in table[table["detail"].notna()].itertuples():
        m = _PARTIAL.match(str(r.detail))
        if m and m.group(1) != m.group(2):
            notes.append(f"{r.display} {r.set}: {r.detail}")
    return list(dict.fromkeys(notes))


def transfer_wide(tasks: pd.DataFrame) -> pd.DataFrame:
    """Task x model (and source) top-1 in %, ordered by group."""
    d = tasks.assign(
        series=series_labels(tasks),
        value=tasks["value"] * 100,
    )
    wide = d.pivot_table(
        index=["group_order", "group", "task"], columns="series", values="value", aggfunc="first"
    )
    return wide.round(1).reset_index().drop(columns="group_order")


def transfer_gap(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task) with both sources: measured, published and the gap in points."""
    m = tasks[tasks["source"] == "measured"]
    p = tasks[tasks["source"] == "published"]
    j = m.merge(p, on=["model", "dataset"], suffixes=("", "_pub"))
    if j.empty:
        return pd.DataFrame(columns=["model", "group", "task", "measured", "published", "gap (pp)"])
    out = pd.DataFrame(
        {
            "model": j["display"],
            "group": j["group"],
            "task": j["task"],
            "measured": (j["value"] * 100).round(1),
            "published": (j["value_pub"] * 100).round(1),
            "gap (pp)": ((j["value"] - j["value_pub"]) * 100).round(1),
        }
    )
    return out.sort_values(["group", "task", "model"]).reset_index(drop=True)


# --------------------------------------------------------------------------- paired


def paired_summary(stored: pd.DataFrame, model_a: str) -> dict[str, object] | None:
    """The stored paired comparison (a row of the ``paired`` table,
    :func:`dashboard.queries.stored_paired`) as model ``model_a`` (A) against the other
    model (B): the 2x2 table, McNemar's exact p-value, each model's accuracy, the accuracy
    difference A - B with its paired bootstrap interval, the error consistency and the
    bootstrap resamples. A row stored the other way round is turned: A's and B's discordant
    counts swap, the difference and its interval change sign; the p-value and kappa are
    symmetric. None without a row."""
    if stored.empty:
        return None
    r = stored.iloc[0]
    flip = r["model_a"] != model_a
    only_a, only_b = (r["only_b"], r["only_a"]) if flip else (r["only_a"], r["only_b"])
    both_right, both_wrong, n = int(r["both_right"]), int(r["both_wrong"]), int(r["n_images"])
    sign = -1.0 if flip else 1.0
    lo, hi = float(r["ci_low"]), float(r["ci_high"])
    nan = float("nan")
    return {
        "n": n,
        "accuracy_a": (both_right + int(only_a)) / n if n else nan,
        "accuracy_b": (both_right + int(only_b)) / n if n else nan,
        "table": pd.DataFrame(
            [[both_right, int(only_a)], [int(only_b), both_wrong]],
            index=["A right", "A wrong"],
            columns=["B right", "B wrong"],
        ),
        "p_value": float(r["p_value"]),
        "diff": sign * float(r["accuracy_diff"]),
        "ci": (-hi, -lo) if flip else (lo, hi),
        "kappa": float(r["kappa"]),
        "n_boot": int(r["n_boot"]),
    }


def error_consistency_matrix(
    correct: pd.DataFrame, humans: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cohen's kappa of error consistency between every pair of models (``correct``: image x
    model booleans) and, with ``humans`` (cue-conflict trials: subject, image, correct),
    between each model and each observer on the images both saw (matched by file name)."""
    from beyond_inet.scoring.paired import error_consistency

    models = list(correct.columns)
    out = pd.DataFrame(index=models, dtype=float)
    for b in models:
        col = []
        for a in models:
            pair = correct[list(dict.fromkeys([a, b]))].dropna().astype(bool)
            col.append(error_consistency(pair[a].to_numpy(), pair[b].to_numpy()))
        out[b] = col
    if humans is not None and len(humans):
        names = pd.Series(correct.index, index=correct.index).str.rsplit("/", n=1).str[-1]
        for subject, trials in humans.groupby("subject"):
            h = trials.drop_duplicates("image").set_index("image")["correct"]
            col = []
            for a in models:
                m = correct[a].dropna()
                keys = names.loc[m.index]
                keep = keys.isin(h.index).to_numpy()
                col.append(
                    error_consistency(
                        m.to_numpy()[keep].astype(bool), h.loc[keys[keep]].to_numpy().astype(bool)
                    )
                    if keep.any()
                    else float("nan")
                )
            out[str(subject)] = col
    return out


# --------------------------------------------------------------------------- invariance


def relative_to_standard(fam: pd.DataFrame, combined: pd.DataFrame) -> pd.DataFrame:
    """``fam``'s values (and intervals) divided by the same model's (and source's)
    ``standard``-view value of the same metric: 1.0 = as good as without the transform,
    so models of different accuracy compare."""
    std = combined[combined["view"] == "standard"][["display", "source", "metric", "value"]]
    d = fam.merge(
        std.rename(columns={"value": "_std"}), on=["display", "source", "metric"], how="inner"
    )
    for c in ("value", "ci_low", "ci_high"):
        d[c] = d[c] / d["_std"]
    return d.drop(columns="_std")


def curve_areas(fam: pd.DataFrame) -> pd.DataFrame:
    """The area under each curve (trapezoid over the family's values) divided by the
    values' range: the curve's mean height, one number per model, source, family, metric."""
    rows = []
    for (display, source, family, metric), g in fam.groupby(
        ["display", "source", "family", "metric"], sort=True
    ):
        g = g.dropna(subset=["x", "value"]).sort_values("x")
        x, y = g["x"].to_numpy(float), g["value"].to_numpy(float)
        area = float(np.trapezoid(y, x) / (x[-1] - x[0])) if len(x) > 1 else float("nan")
        rows.append((display, source, family, metric, area))
    return pd.DataFrame(rows, columns=["display", "source", "family", "metric", "area"])


@dataclass(frozen=True)
class PairedTest:
    """How an Overview column is compared image by image: the dataset and per-image
    ``columns`` it reads, ``prepare(sample_ids) -> (rows, extras)`` (the images it counts
    and per-image arrays every model shares), and ``statistic(*extras, *values)`` (a
    production metric function); ``None`` = an accuracy, tested by McNemar's exact test."""

    dataset: str
    columns: tuple[str, ...] = ("correct",)
    statistic: Callable[..., Any] | None = None
    prepare: Callable[[np.ndarray], tuple[np.ndarray, tuple[np.ndarray, ...]]] | None = None
    vectorized: bool = False


def _all_images(ids: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    return np.arange(len(ids)), ()


def _cue_conflict_cues(ids: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The images whose ids are stimulus names, with their shape and texture (a store may
    hold anything: other ids are left out, never a crash)."""
    from beyond_inet.datasets.cue_conflict import parse_stimulus_name

    rows, parsed = [], []
    for i, s in enumerate(ids):
        try:
            parsed.append(parse_stimulus_name(str(s)))
        except ValueError:
            continue
        rows.append(i)
    return np.asarray(rows, dtype=np.int64), (
        np.array([p[0] for p in parsed], dtype=object),
        np.array([p[1] for p in parsed], dtype=object),
    )


def _imagenet_x_rows(ids: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    aligned = M.align_imagenet_x(ids)
    return aligned.rows, (aligned.labels, aligned.factors)


def _ece(conf: np.ndarray, correct: np.ndarray) -> Any:
    return M.expected_calibration_error(conf.astype(np.float64), correct.astype(np.float64), 15)


def _shape_bias(shapes: np.ndarray, textures: np.ndarray, decision: np.ndarray) -> float:
    return float(M.shape_bias(decision, shapes, textures)["shape_bias"])


def _error_ratio(labels: np.ndarray, factors: np.ndarray, pred: np.ndarray) -> Any:
    stats = M.imagenet_x_statistics((pred == labels).astype(np.float64), factors)
    return stats[..., -1]


#: The Overview columns with a paired test (the averages over several datasets have none).
PAIRED_TESTS: dict[str, PairedTest] = {
    "ImageNet top-1": PairedTest("imagenet-val"),
    "ECE": PairedTest("imagenet-val", ("confidence", "correct"), _ece, _all_images, True),
    "ImageNet-X error ratio": PairedTest(
        "imagenet-val", ("pred",), _error_ratio, _imagenet_x_rows, True
    ),
    "Shape bias": PairedTest("cue-conflict", ("decision",), _shape_bias, _cue_conflict_cues),
}


#: Bootstrap resamples of the Overview's paired tests (p-values to 1 / 500).
OVERVIEW_BOOT = 500
PValues = Callable[[str, Sequence[str]], Sequence[float]]


def paired_p_values(
    test: PairedTest,
    values: Mapping[str, pd.DataFrame],
    best: str,
    others: Sequence[str],
    n_boot: int = OVERVIEW_BOOT,
) -> list[float]:
    """The raw p-value of ``test`` between model ``best`` and each of ``others`` on the
    images both have values for (``values``: per-image column -> image x model frame); NaN
    for a model without values."""
    from beyond_inet.scoring.paired import bootstrap_difference_p, mcnemar_exact

    out = []
    for m in others:
        if any(x not in values[c].columns for c in test.columns for x in (best, m)):
            out.append(float("nan"))
            continue
        pair = {c: values[c][[best, m]].dropna() for c in test.columns}
        ids = sorted(set.intersection(*(set(f.index) for f in pair.values())))
        va = [pair[c].loc[ids, best].to_numpy() for c in test.columns]
        vb = [pair[c].loc[ids, m].to_numpy() for c in test.columns]
        if not ids:
            out.append(float("nan"))
        elif test.statistic is None:
            out.append(mcnemar_exact(va[0].astype(bool), vb[0].astype(bool)).p_value)
        else:
            take, extras = (test.prepare or _all_images)(np.asarray(ids, dtype=object))
            out.append(
                bootstrap_difference_p(
                    test.statistic,
                    (*extras, *(v[take] for v in va)),
                    (*extras, *(v[take] for v in vb)),
                    n_boot,
                    vectorized=test.vectorized,
                )
            )
    return out


def not_significantly_worse(
    numeric: pd.DataFrame, column: str, p_values: PValues, level: float
) -> pd.Series:
    """For Overview ``column``, the measured rows not significantly worse than the column's
    best measured row (by the catalogue's direction): ``p_values(best model, other models)``
    (:func:`paired_p_values`, or a cached query of it) Holm-corrected across the pairs
    shown, adjusted p >= ``level``. False for the best row itself, for other sources and
    where no p-value exists."""
    from beyond_inet.scoring.paired import holm

    out = pd.Series(False, index=numeric.index)
    rows = numeric[numeric["source"] == "measured"]
    rows = rows[rows[column].notna()] if column in rows else rows.iloc[0:0]
    if len(rows) < 2:
        return out
    higher = next(p for p in PROPERTIES if p.title == column).higher_is_better
    best = rows[column].idxmax() if higher else rows[column].idxmin()
    others = [i for i in rows.index if i != best]
    raw = np.asarray(p_values(rows.loc[best, "model"], [rows.loc[i, "model"] for i in others]))
    adjusted = np.full(len(raw), np.nan)
    ok = ~np.isnan(raw)
    if ok.any():
        adjusted[ok] = holm(raw[ok])
    for i, p in zip(others, adjusted, strict=True):
        out[i] = bool(p >= level)  # NaN: False
    return out


#: Explorer widget keys that a link into it clears (class, factor, the full-size image).
EXPLORER_DEFAULTS = ("ex-class", "ex-factor", "ex-chosen")


def explorer_filters(
    dataset: str, view: str, outcomes: Mapping[str, str], models: Sequence[str]
) -> dict[str, object]:
    """The Explorer's widget state (its session keys) that shows the images of ``dataset``
    / ``view`` where each model of ``outcomes`` is ``correct`` / ``wrong`` (the other
    ``models``: any outcome; no other filter: the keys of :data:`EXPLORER_DEFAULTS` are to
    be removed, so those widgets start at their defaults)."""
    state: dict[str, object] = {
        "ex-dataset": dataset,
        "ex-view": view,
        "ex-disagree": False,
        "ex-page": 1,
    }
    state.update({f"ex-o-{m}": outcomes.get(m, "any") for m in models})
    return state


#: ``--profile`` measurements as table columns: (view, metric) -> column label.
PROFILE_LABELS = {
    ("batch1", "throughput"): "img/s, batch 1",
    ("best", "throughput"): "img/s, best batch",
    ("best", "batch_size"): "best batch",
    ("batch1", "latency_p50_ms"): "latency p50 (ms)",
    ("batch1", "latency_p95_ms"): "latency p95 (ms)",
    ("best", "peak_memory_mib"): "peak memory (MiB)",
}


def profile_table(long: pd.DataFrame) -> pd.DataFrame:
    """The store's latest profiles (:func:`dashboard.queries.profiles`) one row per model:
    ``measured on`` (device, precision) and one column per :data:`PROFILE_LABELS` entry."""
    cols = ["model", "measured on", *PROFILE_LABELS.values()]
    if long.empty:
        return pd.DataFrame(columns=cols)
    keyed = long.assign(
        col=[PROFILE_LABELS.get((v, m)) for v, m in zip(long["view"], long["metric"], strict=True)]
    )
    wide = keyed.dropna(subset=["col"]).pivot_table(
        index="model", columns="col", values="value", aggfunc="first"
    )
    where = long.drop_duplicates("model").set_index("model")
    on = where["device"].astype(str) + ", " + where["precision"].astype(str)
    on = on.where(~where["random_weights"].astype(bool), on + RANDOM_MARK)
    out = wide.reindex(columns=list(PROFILE_LABELS.values())).assign(**{"measured on": on})
    return out.reset_index()[cols]


def cost_table(
    profiles: pd.DataFrame, models: Sequence[str], published: Mapping[str, tuple[float, float]]
) -> pd.DataFrame:
    """What ``models`` cost: their measured profile (:func:`profile_table`, "—" where not
    profiled) beside timm's published GPU / CPU throughput."""
    rows = []
    by_model = profiles.set_index("model") if len(profiles) else None
    for m in models:
        row: dict[str, object] = {"model": m}
        if by_model is not None and m in by_model.index:
            row.update(by_model.loc[m].to_dict())
        gpu, cpu = published.get(m, (float("nan"), float("nan")))
        row["timm img/s, GPU (RTX 4090, AMP)"] = gpu
        row["timm img/s, CPU (i7-12700H, fp32)"] = cpu
        rows.append(row)
    labels = list(PROFILE_LABELS.values())
    published_cols = ["timm img/s, GPU (RTX 4090, AMP)", "timm img/s, CPU (i7-12700H, fp32)"]
    cols = ["model", "measured on", *labels[:2], *published_cols, *labels[2:]]
    out = pd.DataFrame(rows).reindex(columns=cols)
    numeric = [*labels, *published_cols]
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce")
    return out


#: Decimals of the cost table's columns (others: 1).
COST_DECIMALS = {"best batch": 0, "latency p50 (ms)": 2, "latency p95 (ms)": 2}


def shown_numbers(df: pd.DataFrame, decimals: Mapping[str, int] | None = None) -> pd.DataFrame:
    """``df`` for display: numeric columns as text, thousands separated, with
    ``decimals[column]`` decimals (default 1), missing values as :data:`MISSING` (Streamlit
    would show ``None``)."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            k = (decimals or {}).get(c, 1)
            out[c] = [MISSING if pd.isna(v) else f"{v:,.{k}f}" for v in out[c]]
        else:
            out[c] = out[c].astype(object).where(out[c].notna(), MISSING)
    return out


# --------------------------------------------------------------------------- your own images

#: The own-dataset methods (stored views) as the page names them.
OWN_METHODS: dict[str, str] = {
    "probe": "linear probe",
    "knn": "k-nearest neighbours",
    "zero-shot": "zero-shot (CLIP)",
}


#: How the ranking marks a model against the best (:func:`own_ranking`'s ``mark``).
OWN_MARKS: dict[str, str] = {"best": "★ best", "≈": "≈ best", "worse": "▼ worse"}


def own_current(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs on one own dataset made on its latest version (the ``content``
    fingerprint of the most recent run: the same images, split and labels), and the models
    whose latest run was made on another version (left out: their numbers are on other test
    images, their labels maybe other classes)."""
    if runs.empty:
        return runs, []
    latest = runs.sort_values("finished_at").iloc[-1]["content"]
    same = runs["content"] == latest
    return runs[same], sorted(runs.loc[~same, "model"])


def own_ranking(
    metrics: pd.DataFrame, paired: pd.DataFrame, view: str, alpha: float = 0.05
) -> pd.DataFrame:
    """The models on one own dataset's method (``view``) ranked by top-1: ``model, top1,
    top1_low, top1_high, balanced, balanced_low, balanced_high, ece, p_vs_best,
    p_holm, mark`` — ``p_vs_best``: McNemar's exact p-value against the best model on the
    same test images (the stored ``paired`` rows), Holm-adjusted over the others; ``mark``:
    ``best``, ``≈`` (not significantly worse at ``alpha``) or ``worse``."""
    from beyond_inet.scoring.paired import holm

    m = metrics[metrics["view"] == view]

    def col(name: str) -> pd.DataFrame:
        d = m[m["metric"] == name].set_index("model")
        return d[["value", "ci_low", "ci_high"]]

    top1, bal, ece = col("top1"), col("mean_per_class"), col("ece")
    out = pd.DataFrame(
        {
            "top1": top1["value"],
            "top1_low": top1["ci_low"],
            "top1_high": top1["ci_high"],
        }
    )
    if out.empty:
        return out.reset_index(names="model")
    out = out.join(
        bal.rename(
            columns={"value": "balanced", "ci_low": "balanced_low", "ci_high": "balanced_high"}
        )
    ).join(ece[["value"]].rename(columns={"value": "ece"}))
    out = out.sort_values(["top1", "balanced"], ascending=False, kind="stable")
    best = out.index[0]
    p = {}
    pv = paired[paired["view"] == view]
    for model in out.index[1:]:
        row = pv[
            ((pv["model_a"] == best) & (pv["model_b"] == model))
            | ((pv["model_a"] == model) & (pv["model_b"] == best))
        ]
        p[model] = float(row["p_value"].iloc[0]) if len(row) else math.nan
    out["p_vs_best"] = [p.get(x, math.nan) for x in out.index]
    tested = [x for x in out.index[1:] if np.isfinite(p[x])]
    adjusted = dict(zip(tested, holm(np.array([p[x] for x in tested])), strict=True))
    out["p_holm"] = [adjusted.get(x, math.nan) for x in out.index]
    out["mark"] = [
        "best"
        if x == best
        else (
            ""
            if not np.isfinite(out.loc[x, "p_holm"])
            else "≈"
            if out.loc[x, "p_holm"] >= alpha
            else "worse"
        )
        for x in out.index
    ]
    return out.reset_index(names="model")


def per_class_accuracy(preds: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Per model and class (``preds``: ``model, label, correct``): ``model, class,
    accuracy, n`` (the test images of the class), classes in their index order."""
    d = preds.assign(correct=preds["correct"].astype(float))
    g = d.groupby(["model", "label"])["correct"].agg(["mean", "size"]).reset_index()
    g["class"] = [classes[int(i)] if 0 <= int(i) < len(classes) else str(i) for i in g["label"]]
    return g.rename(columns={"mean": "accuracy", "size": "n"})[["model", "class", "accuracy", "n"]]


def confusion_matrix(preds: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts of (true class, predicted class) of one model's ``preds`` (``label, pred``):
    rows true, columns predicted, every class in index order."""
    k = len(classes)
    counts = np.zeros((k, k), dtype=np.int64)
    label, pred = preds["label"].to_numpy(int), preds["pred"].to_numpy(int)
    ok = (label >= 0) & (label < k) & (pred >= 0) & (pred < k)
    np.add.at(counts, (label[ok], pred[ok]), 1)
    return pd.DataFrame(counts, index=list(classes), columns=list(classes))
