"""The paper's published numbers, shipped in ``data/published/``, in the store's metric keys.

Each published row (``property, model, dataset, metric, value, unit, provenance, source``) is
mapped to the key the store uses for the same number (``dataset, view, metric``, fractions in
0-1), so measured and published values line up (VTAB tasks: ``vtab-<task>/top1``). Rows
without a store counterpart (FLOPs) keep ``dataset``/``metric`` as ``None`` and appear only on
the Reproduction page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "data" / "published"
RESULTS_CSV = "paper_published_results.csv"
HUMANS_CSV = "human_shape_bias.csv"

#: Robustness benchmarks in the paper's average (its "Average" = mean of these 7 top-1s).
ROBUSTNESS_BENCHMARKS: tuple[tuple[str, str, str], ...] = (
    # (label, store dataset, store metric)
    ("ImageNet-V2", "imagenet-v2", "top1"),
    ("ImageNet-ReaL", "imagenet-val", "top1_real"),
    ("ImageNet-Sketch", "imagenet-sketch", "top1"),
    ("ImageNet-R", "imagenet-r", "top1"),
    ("ImageNet-A", "imagenet-a", "top1"),
    ("ImageNet-C", "imagenet-c", "top1"),
    ("ImageNet-Hard", "imagenet-hard", "top1"),
)
ROBUSTNESS_AVERAGE = ("robustness", "top1_average")  # (dataset, metric) of the derived average


@dataclass(frozen=True)
class Mapping:
    """Where a published (dataset, metric) lives in the store, and the factor to 0-1."""

    dataset: str
    metric: str
    scale: float = 1.0
    view: str = "standard"


#: (published dataset, published metric) -> store key; the first listed wins on duplicates.
MAPPINGS: dict[tuple[str, str], Mapping] = {
    ("ImageNet-1K val (INet-Val)", "top-1 accuracy"): Mapping("imagenet-val", "top1", 0.01),
    ("ImageNet-1K val", "top-1 accuracy"): Mapping("imagenet-val", "top1", 0.01),
    ("ImageNet-1K val", "ECE"): Mapping("imagenet-val", "ece"),
    ("ImageNet-R (200-class logits)", "ECE"): Mapping("imagenet-r", "ece"),
    ("ImageNet-R (200-class logits)", "top-1 accuracy"): Mapping("imagenet-r", "top1", 0.01),
    ("ImageNet-Real", "top-1 accuracy"): Mapping("imagenet-val", "top1_real", 0.01),
    ("ImageNet-Sketch", "top-1 accuracy"): Mapping("imagenet-sketch", "top1", 0.01),
    ("ImageNet-R", "top-1 accuracy"): Mapping("imagenet-r", "top1", 0.01),
    ("ImageNet-A", "top-1 accuracy"): Mapping("imagenet-a", "top1", 0.01),
    ("ImageNet-C", "top-1 accuracy"): Mapping("imagenet-c", "top1", 0.01),
    ("ImageNet-Hard", "top-1 accuracy"): Mapping("imagenet-hard", "top1", 0.01),
    ("ImageNet-V2", "top-1 accuracy"): Mapping("imagenet-v2", "top1", 0.01),
    ("Average", "top-1 accuracy"): Mapping(*ROBUSTNESS_AVERAGE, 0.01),
    ("cue-conflict (1200 images with shape != texture)", "shape bias"): Mapping(
        "cue-conflict", "shape_bias"
    ),
    ("cue-conflict", "accuracy (top-1) vs shape label"): Mapping(
        "cue-conflict", "accuracy_all_images"
    ),
}


def _vtab_mappings() -> dict[tuple[str, str], Mapping]:
    """The paper's VTAB rows (``VTAB: <task label>``, accuracy in %) -> each task's probe
    top-1, and its 19-task average -> ``vtab/top1_vtab``."""
    from beyond_inet.datasets.transfer import TASKS

    out = {
        (f"VTAB: {t.label}", "accuracy"): Mapping(t.stored, "top1", 0.01) for _, t in TASKS.items()
    }
    out[("VTAB: Average (19 VTAB datasets)", "accuracy")] = Mapping("vtab", "top1_vtab", 0.01)
    return out


MAPPINGS.update(_vtab_mappings())

COLUMNS = [
    "model",
    "paper_label",
    "property",
    "published_dataset",
    "setting",
    "published_metric",
    "published_value",
    "unit",
    "dataset",
    "view",
    "metric",
    "value",
    "preferred",
    "provenance",
    "source",
]


def _decimals(x: float) -> int:
    text = repr(float(x))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> pd.DataFrame:
    raw = pd.read_csv(Path(directory) / RESULTS_CSV)
    rows = []
    for r in raw.itertuples(index=False):
        m = MAPPINGS.get((r.dataset, r.metric))
        rows.append(
            {
                "model": r.model,
                "paper_label": r.paper_label,
                "property": r.property,
                "published_dataset": r.dataset,
                "setting": r.setting,
                "published_metric": r.metric,
                "published_value": float(r.value),
                "unit": r.unit,
                "dataset": m.dataset if m else None,
                "view": m.view if m else None,
                "metric": m.metric if m else None,
                "value": float(r.value) * m.scale if m else float("nan"),
                "provenance": r.provenance,
                "source": r.source,
                "_rank": (
                    list(MAPPINGS).index((r.dataset, r.metric)) if m else 99,
                    -_decimals(r.value),
                ),
            }
        )
    df = pd.DataFrame(rows)
    df["preferred"] = False
    mapped = df[df["dataset"].notna()].sort_values("_rank", kind="stable")
    first = mapped.drop_duplicates(["model", "dataset", "view", "metric"]).index
    df.loc[first, "preferred"] = True
    return df[COLUMNS]


def published_rows(directory: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """Every published number with its store key (``dataset/view/metric``, NaN-free ``value``
    in store units where mapped), ``preferred`` marking the one value used per key, and its
    ``provenance`` and ``source``. A copy; raises FileNotFoundError if the CSV is missing."""
    return _load(str(directory)).copy()


def published_metrics(directory: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """The preferred published value per (model, dataset, view, metric), in the measured
    metrics' long format plus ``source='published'``, ``provenance`` and ``reference``: the
    numbers as published (the VTAB group means are derived from the per-task numbers by
    :func:`dashboard.frames.with_vtab_summaries`, as the measured ones)."""
    df = published_rows(directory)
    df = df[df["preferred"]]
    return long_format(
        df["model"], df["dataset"], df["view"], df["metric"], df["value"], df["provenance"],
        df["source"],
    )  # fmt: skip


def long_format(
    model: object,
    dataset: object,
    view: object,
    metric: object,
    value: object,
    provenance: object,
    reference: object,
) -> pd.DataFrame:
    """Published numbers in the measured metrics' long format (``source='published'``,
    no intervals, not random), each argument a column or one value for all rows."""
    return pd.DataFrame(
        {
            "model": model,
            "dataset": dataset,
            "view": view,
            "metric": metric,
            "value": value,
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "source": "published",
            "random_weights": False,
            "provenance": provenance,
            "reference": reference,
        }
    ).reset_index(drop=True)


def paper_labels(directory: Path = PUBLISHED_DIR) -> dict[str, str]:
    """Model key -> the paper's label (``deit3_21k`` -> ``ViT-sup``)."""
    df = published_rows(directory)
    return dict(zip(df["model"], df["paper_label"], strict=False))


HUMAN_TRIALS = "human_cue_conflict"


@functools.lru_cache(maxsize=2)
def human_trials(directory: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """The 10 human observers' cue-conflict trials (model-vs-human raw data, CC-BY-4.0):
    ``subject``, ``image`` (the stimulus file name, trial prefix removed), ``response``,
    ``shape`` and ``correct`` (the response is the shape category)."""
    parts = [pd.read_csv(f) for f in sorted((directory / HUMAN_TRIALS).glob("*.csv"))]
    raw = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(
        {
            "subject": raw["subj"],
            "image": raw["imagename"].str.split("_").str[-1],
            "response": raw["object_response"],
            "shape": raw["category"],
            "correct": raw["object_response"] == raw["category"],
        }
    )


def human_shape_bias(directory: Path = PUBLISHED_DIR) -> pd.DataFrame:
    """The human observers' shape bias (``subject, shape_bias, source``)."""
    return pd.read_csv(directory / HUMANS_CSV)


# --------------------------------------------------------------------------- catalogue

#: Catalogue (dataset, metric) -> the store's (dataset, view, metric) for the same number.
CATALOG_TO_STORE: dict[tuple[str, str], tuple[str, str, str]] = {
    ("imagenet-val", "top1"): ("imagenet-val", "standard", "top1"),
    ("imagenet-val", "top5"): ("imagenet-val", "standard", "top5"),
    ("imagenet-real", "top1"): ("imagenet-val", "standard", "top1_real"),
    ("imagenet-v2", "top1"): ("imagenet-v2", "standard", "top1"),
    ("imagenet-sketch", "top1"): ("imagenet-sketch", "standard", "top1"),
    ("imagenet-a", "top1"): ("imagenet-a", "standard", "top1"),
    ("imagenet-r", "top1"): ("imagenet-r", "standard", "top1"),
    ("imagenet-c", "top1"): ("imagenet-c", "standard", "top1"),
    ("imagenet-c", "mean_ce"): ("imagenet-c", "standard", "mean_ce"),
}


@functools.lru_cache(maxsize=1)
def _catalog_keyed() -> pd.DataFrame:
    from beyond_inet import catalog

    res = catalog.results()
    res = res[~res["model_id"].str.contains("@", regex=False)]  # the weight's own size only
    mods = catalog.models()[["library", "model_id", "name"]]
    keys = pd.DataFrame(
        [(d, m, *v) for (d, m), v in CATALOG_TO_STORE.items()],
        columns=["cat_dataset", "cat_metric", "dataset", "view", "metric"],
    )
    out = res.merge(mods, on=["library", "model_id"]).merge(
        keys,
        left_on=["dataset", "metric"],
        right_on=["cat_dataset", "cat_metric"],
        suffixes=("_cat", ""),
    )
    return out[["name", "library", "dataset", "view", "metric", "value", "source"]].rename(
        columns={"name": "model", "source": "reference"}
    )


def catalog_metrics(models: tuple[str, ...]) -> pd.DataFrame:
    """The published (timm / open_clip) numbers of catalogue ``models`` (precompute names),
    in the measured metrics' long format with ``source='published'`` (each weight at its
    own input size, as the libraries publish it)."""
    df = _catalog_keyed()
    df = df[df["model"].isin(list(models))]
    out = long_format(
        df["model"], df["dataset"], df["view"], df["metric"], df["value"], df["library"],
        df["reference"],
    )  # fmt: skip
    return with_robustness_average(out)


def robustness_averages(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model (and ``source`` / ``provenance`` where ``rows`` have them), the mean top-1
    over the paper's robustness benchmarks present (view ``standard``; ImageNet-C's is the
    mean of its views), as ``robustness/top1_average`` rows in ``rows``' columns with a
    ``detail`` that says over which: the one derivation for measured numbers and for the
    libraries' published ones (timm publishes V2, ReaL, Sketch, R and A; imagenet-testbed
    also C; none Hard)."""
    keys = {(d, m): label for label, d, m in ROBUSTNESS_BENCHMARKS}
    mask = [(d, m) in keys for d, m in zip(rows["dataset"], rows["metric"], strict=True)]
    picked = rows[pd.Series(mask, index=rows.index, dtype=bool) & (rows["view"] == "standard")]
    by = [c for c in ("model", "source", "provenance") if c in rows]
    out = []
    for _, g in picked.groupby(by, sort=False, dropna=False):
        names = [keys[(d, m)] for d, m in zip(g["dataset"], g["metric"], strict=True)]
        missing = [label for label, *_ in ROBUSTNESS_BENCHMARKS if label not in names]
        detail = f"mean of {len(names)} of {len(ROBUSTNESS_BENCHMARKS)} benchmarks" + (
            f" (no {', '.join(missing)})" if missing else ""
        )
        row = g.iloc[0].to_dict()
        row.update(
            dataset=ROBUSTNESS_AVERAGE[0],
            metric=ROBUSTNESS_AVERAGE[1],
            value=float(g["value"].mean()),
            ci_low=float("nan"),
            ci_high=float("nan"),
            detail=detail,
        )
        if "random_weights" in row:
            row["random_weights"] = bool(g["random_weights"].astype(bool).any())
        if "run_id" in row:
            row["run_id"] = None
        if "reference" in row:
            row["reference"] = "derived: " + detail
        out.append(row)
    columns = [*rows.columns, *(["detail"] if "detail" not in rows else [])]
    return pd.DataFrame(out, columns=columns)


def with_robustness_average(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with their :func:`robustness_averages` appended, except where ``rows``
    already hold one (the paper's printed average)."""
    derived = robustness_averages(rows)
    if derived.empty:
        return rows
    by = [c for c in ("model", "source", "provenance") if c in rows]
    have = rows[
        (rows["dataset"] == ROBUSTNESS_AVERAGE[0]) & (rows["metric"] == ROBUSTNESS_AVERAGE[1])
    ]
    old = set(map(tuple, have[by].astype(str).itertuples(index=False)))
    new = [tuple(r) not in old for r in derived[by].astype(str).itertuples(index=False)]
    derived = derived[new]
    return pd.concat([rows, derived], ignore_index=True) if len(derived) else rows
