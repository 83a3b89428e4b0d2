"""Read-only data access for the dashboard: every page's numbers come from here.

All SQL runs through :class:`beyond_inet.store.Store` (short-lived read-only connections, ``?``
parameters, retry on a writer's lock). Aggregation happens in SQL, except what must match the
published numbers' derivation (the VTAB means: :func:`dashboard.frames.with_vtab_summaries`)
and what the library computes (reliability bins: :mod:`beyond_inet.scoring.metrics`); paired
comparisons are read as ``precompute`` stored them. Results are cached with
``st.cache_data`` keyed on explicit arguments, including :func:`store_version` so a refresh
after ``precompute`` finishes a run shows it. Each cached function keeps the plain function as
``.uncached`` (the benchmark times that). Only the latest finished run per (model, dataset) is
read, so a rerun with other settings replaces what the pages show.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from beyond_inet import settings
from beyond_inet.records import PAIRED_COLUMNS as PAIRED_SQL_COLUMNS
from beyond_inet.records import PROFILE_DATASET
from beyond_inet.store import Store

F = TypeVar("F", bound=Callable[..., Any])

LATEST_RUNS = (
    "SELECT * FROM runs WHERE status = 'finished' QUALIFY row_number() OVER "
    "(PARTITION BY model, dataset ORDER BY finished_at DESC, run_id) = 1"
)
#: The latest evaluation runs (per-image results): every page but the cost tables reads
#: these; ``--profile`` runs (metrics only) are read by :func:`profiles`.
LATEST_EVAL_RUNS = f"SELECT * FROM ({LATEST_RUNS}) WHERE dataset <> '{PROFILE_DATASET}'"
RUN_COLUMNS = [
    "run_id",
    "model",
    "model_label",
    "dataset",
    "weights",
    "random_weights",
    "n_samples",
    "n_failed",
    "sample_limit",
    "views",
    "dataset_root",
    "finished_at",
]
METRIC_COLUMNS = [
    "model",
    "dataset",
    "view",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "random_weights",
    "run_id",
]


def cached(fn: F) -> F:
    """``st.cache_data`` on ``fn`` (explicit, hashable arguments); ``.uncached`` is ``fn``."""
    wrapped = st.cache_data(show_spinner=False, max_entries=512)(fn)
    wrapped.uncached = fn  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def store_path(cli_value: str | None = None) -> Path:
    """The store to read: ``--store`` after ``--`` on the streamlit command line, else
    ``$BEYOND_INET_STORE``, else ``data/results.duckdb`` under the repository."""
    if cli_value:
        return Path(cli_value)
    return settings.env_store() or Path(__file__).resolve().parents[1] / settings.DEFAULT_STORE


def store_version(path: str | Path) -> str:
    """A token that changes whenever the store file (or its WAL) changes; '' if absent."""
    parts = []
    for p in (Path(path), Path(f"{path}.wal")):
        try:
            s = p.stat()
            parts.append(f"{s.st_mtime_ns}:{s.st_size}")
        except OSError:
            parts.append("-")
    return "" if parts[0] == "-" else "|".join(parts)


def _q(path: str, sql: str, params: Sequence[Any], columns: list[str]) -> pd.DataFrame:
    """Run ``sql``; an empty frame with ``columns`` when there is no store or no tables."""
    df = Store(path, lock_wait=settings.DASHBOARD_LOCK_WAIT_SECONDS).query(sql, params)
    if df.empty and not len(df.columns):
        return pd.DataFrame(columns=columns)
    return df


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# --------------------------------------------------------------------------- runs & metrics


@cached
def latest_runs(path: str, version: str) -> pd.DataFrame:
    """The latest finished run per (model, dataset) with its provenance (the evaluations
    with per-image results; ``--profile`` runs are read by :func:`profiles`)."""
    return _q(
        path,
        f"SELECT {', '.join(RUN_COLUMNS)} FROM ({LATEST_EVAL_RUNS}) ORDER BY model, dataset",
        [],
        RUN_COLUMNS,
    )


PROFILE_COLUMNS = [
    "run_id",
    "model",
    "device",
    "precision",
    "random_weights",
    "view",
    "metric",
    "value",
]


@cached
def profiles(path: str, version: str) -> pd.DataFrame:
    """The latest ``--profile`` run of each model, long: its run id, device and precision,
    and each (view, metric, value)."""
    return _q(
        path,
        f"SELECT l.run_id, l.model, l.device, l.precision, l.random_weights, m.view, m.metric, "
        "m.value "
        f"FROM metrics m JOIN ({LATEST_RUNS}) l USING (run_id) WHERE l.dataset = ? "
        "ORDER BY l.model, m.view, m.metric",
        [PROFILE_DATASET],
        PROFILE_COLUMNS,
    )


@cached
def all_runs(path: str, version: str) -> pd.DataFrame:
    """Every finished run (also superseded ones), newest first."""
    cols = [
        *RUN_COLUMNS,
        "preprocessing",
        "settings",
        "device",
        "precision",
        "seconds",
        "code_version",
    ]
    return _q(
        path,
        f"SELECT {', '.join(cols)} FROM runs WHERE status = 'finished' ORDER BY finished_at DESC",
        [],
        cols,
    )


def _run_ids(path: str, version: str, dataset: str | None, models: Sequence[str]) -> list[str]:
    runs = latest_runs(path, version)
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    return runs[runs["model"].isin(list(models))]["run_id"].tolist()


def _derived_sql() -> str:
    """SQL for the derived summaries of a model's own views: a robustness benchmark stored
    only per view (ImageNet-C) gets its mean as view ``standard``;
    ``invariance/agreement_mean`` and ``pug-imagenet/top1_mean``. (The averages over
    benchmarks and tasks are derived in pandas for measured and published numbers alike:
    :func:`dashboard.published.with_robustness_average`,
    :func:`dashboard.frames.with_vtab_summaries`.)"""
    from dashboard.frames import INVARIANCE_FAMILIES
    from dashboard.published import ROBUSTNESS_BENCHMARKS

    bench = ", ".join(f"('{d}', '{m}')" for _, d, m in ROBUSTNESS_BENCHMARKS)
    fams = ", ".join(f"'{f}'" for f in INVARIANCE_FAMILIES)
    nan = "'nan'::DOUBLE"
    return (
        f"b AS (SELECT * FROM (VALUES {bench}) t(dataset, metric)), "
        "bm AS (SELECT m.model, m.dataset, m.metric, bool_or(m.view = 'standard') AS has_std, "
        "coalesce(first(m.value) FILTER (WHERE m.view = 'standard'), "
        "avg(m.value) FILTER (WHERE m.view <> 'standard')) AS value, "
        "count(*) FILTER (WHERE m.view <> 'standard') AS k, "
        "bool_or(m.random_weights) AS random_weights FROM m JOIN b USING (dataset, metric) "
        "GROUP BY m.model, m.dataset, m.metric), "
        f"d AS (SELECT model, dataset, 'standard' AS view, metric, value, {nan} AS ci_low, "
        f"{nan} AS ci_high, random_weights, NULL AS run_id, 'mean of ' || k || ' views' "
        "AS detail FROM bm WHERE NOT has_std "
        f"UNION ALL SELECT model, 'invariance', 'standard', 'agreement_mean', avg(value), {nan}, "
        f"{nan}, bool_or(random_weights), NULL, 'mean of ' || count(*) || ' views' FROM m "
        "WHERE dataset = 'imagenet-val' AND metric = 'agreement' AND "
        f"split_part(view, ':', 1) IN ({fams}) GROUP BY model "
        f"UNION ALL SELECT model, 'pug-imagenet', 'standard', 'top1_mean', avg(value), {nan}, "
        f"{nan}, bool_or(random_weights), NULL, 'mean of ' || count(*) || ' factors' FROM m "
        "WHERE dataset = 'pug-imagenet' AND metric = 'top1' AND view <> 'standard' "
        "GROUP BY model) "
    )


@cached
def metrics(
    path: str,
    version: str,
    datasets: tuple[str, ...] | None = None,
    derived: bool = False,
    names: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Long-format metrics of the latest runs (optionally of some datasets / metric names
    only), with the run's ``random_weights`` and a ``detail`` column. With ``derived`` (all
    datasets and metrics only), also the summaries of :func:`_derived_sql` and the VTAB
    means of :func:`dashboard.frames.with_vtab_summaries`."""
    cols = [*METRIC_COLUMNS, "detail"]
    conds, params = [], []
    for column, values in (("dataset", datasets), ("metric", names)):
        if values is not None:
            if not values:
                return pd.DataFrame(columns=cols)
            conds.append(f"m.{column} IN ({_marks(len(values))})")
            params += list(values)
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    derived = derived and datasets is None and names is None
    base = (
        f"WITH latest AS ({LATEST_EVAL_RUNS}), m AS (SELECT m.model, m.dataset, m.view, "
        "m.metric, m.value, m.ci_low, m.ci_high, l.random_weights, m.run_id, "
        f"NULL::VARCHAR AS detail FROM metrics m JOIN latest l USING (run_id) {where})"
    )
    if not derived:
        sql = f"{base} SELECT * FROM m ORDER BY model, dataset, view, metric"
        return _q(path, sql, params, cols)
    from dashboard.frames import with_vtab_summaries
    from dashboard.published import with_robustness_average

    sql = f"{base}, {_derived_sql()} SELECT * FROM m UNION ALL SELECT * FROM d"
    df = with_vtab_summaries(with_robustness_average(_q(path, sql, params, cols)))
    return df.sort_values(["model", "dataset", "view", "metric"], ignore_index=True, kind="stable")


def published_for(models: tuple[str, ...]) -> pd.DataFrame:
    """Published numbers of ``models``: the paper's for its four, the libraries' (the model
    catalogue) for any other catalogue weight; with the VTAB means of their per-task
    numbers (:func:`dashboard.frames.with_vtab_summaries`, as for measured ones)."""
    from dashboard.frames import with_vtab_summaries
    from dashboard.published import catalog_metrics, published_metrics

    pub = published_metrics()
    others = tuple(m for m in models if m not in set(pub["model"]))
    extra = catalog_metrics(others) if others else pd.DataFrame()
    return with_vtab_summaries(pd.concat([pub, extra], ignore_index=True) if len(extra) else pub)


@cached
def combined(
    path: str,
    version: str,
    source: str,
    models: tuple[str, ...],
    datasets: tuple[str, ...] | None = None,
    names: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Measured (with the derived summaries when neither ``datasets`` nor metric ``names``
    is given) and published numbers of ``models`` per ``source`` (see
    :func:`dashboard.frames.combine`)."""
    from dashboard import frames

    measured = pd.DataFrame(columns=[*METRIC_COLUMNS, "detail"])
    if source != "published" and path and store_version(path):
        measured = metrics(path, version, datasets, derived=True, names=names)
    pub = published_for(models)
    if datasets is not None:
        pub = pub[pub["dataset"].isin(list(datasets))]
    if names is not None:
        pub = pub[pub["metric"].isin(list(names))]
    return frames.combine(measured, pub, source, models)


@cached
def reproduction_table(
    path: str, version: str, source: str, models: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(combined, reproduction) for the Reproduction page: every published number of
    ``models`` next to the measured one (none when ``source`` is ``published``)."""
    from dashboard import frames
    from dashboard.published import published_metrics, published_rows

    measured = pd.DataFrame(columns=[*METRIC_COLUMNS, "detail"])
    if source != "published" and path and store_version(path):
        measured = metrics(path, version, None, True)
    comb = frames.combine(measured, published_metrics(), "both", models)
    rows = published_rows()
    return comb, frames.reproduction(comb, rows[rows["model"].isin(list(models))])


# --------------------------------------------------------------------------- calibration


@cached
def calibration_inputs(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    scaled: bool = False,
) -> pd.DataFrame:
    """Per labelled image of the latest runs of ``models`` on ``dataset`` / ``view``:
    ``model, confidence, correct`` — the images the stored ECE counts (with ``scaled``: the
    confidence after temperature scaling, where stored)."""
    cols = ["model", "confidence", "correct"]
    ids = _run_ids(path, version, dataset, models)
    if not ids:
        return pd.DataFrame(columns=cols)
    conf = "confidence_ts" if scaled else "confidence"  # a column name, never user input
    return _q(
        path,
        f"SELECT model, {conf} AS confidence, correct FROM predictions WHERE dataset = ? "
        f"AND run_id IN ({_marks(len(ids))}) AND view = ? AND label IS NOT NULL "
        f"AND {conf} IS NOT NULL ORDER BY model",
        [dataset, *ids, view],
        cols,
    )


@cached
def calibration_table(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    n_bins: int,
    scaled: bool = False,
) -> pd.DataFrame:
    """Reliability bins per model (:func:`dashboard.frames.reliability_bins`, i.e.
    :func:`beyond_inet.scoring.metrics.calibration_bins`) of :func:`calibration_inputs`:
    the non-empty bins (``model, bin, count, n_correct, accuracy, mean_confidence``)."""
    from dashboard.frames import reliability_bins

    per_image = calibration_inputs(path, version, dataset, view, models, scaled)
    return reliability_bins(per_image, n_bins)


@cached
def calibration_errors(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    n_bins: int,
) -> pd.DataFrame:
    """Per model ECE and MCE with ``n_bins`` bins (:func:`dashboard.frames.binned_errors`,
    i.e. :func:`beyond_inet.scoring.metrics.calibration_errors`) of
    :func:`calibration_inputs`: the stored ``ece`` / ``mce`` are these with 15 bins."""
    from dashboard.frames import binned_errors

    return binned_errors(calibration_inputs(path, version, dataset, view, models), n_bins)


# --------------------------------------------------------------------------- cue-conflict


@cached
def cue_conflict_gallery(
    path: str, version: str, models: tuple[str, ...], n: int, seed: int
) -> pd.DataFrame:
    """``n`` cue-conflict images (a seeded pseudo-random pick) with each model's decision:
    ``sample_id, model, decision, correct, dataset_root``."""
    cols = ["sample_id", "model", "decision", "correct", "dataset_root"]
    ids = _run_ids(path, version, "cue-conflict", models)
    if not ids:
        return pd.DataFrame(columns=cols)
    sql = (
        "WITH p AS (SELECT sample_id, model, decision, correct, run_id FROM predictions "
        f"WHERE dataset = 'cue-conflict' AND view = 'standard' AND run_id IN ({_marks(len(ids))})"
        "), s AS (SELECT DISTINCT sample_id FROM p ORDER BY hash(sample_id || ?::VARCHAR) "
        "LIMIT ?) SELECT p.* FROM p JOIN s USING (sample_id) ORDER BY sample_id, model"
    )
    df = _q(path, sql, [*ids, seed, n], [*cols[:-1], "run_id"])
    return _with_root(df, latest_runs(path, version))[cols]


# --------------------------------------------------------------------------- explorer


@cached
def explorer_options(path: str, version: str, dataset: str) -> tuple[list[str], list[int]]:
    """(views, labels) the Explorer offers for a dataset, read through one connection: the
    views with per-image predictions (``standard`` first; ImageNet-C and PUG-ImageNet have
    only their ``<corruption>:<severity>`` / factor views) and the ImageNet labels present
    (in the first view; every view holds the same images or, for sample groups, classes)."""
    ids = _run_ids(path, version, dataset, tuple(latest_runs(path, version)["model"]))
    if not ids:
        return ["standard"], []
    with Store(path, lock_wait=settings.DASHBOARD_LOCK_WAIT_SECONDS).reader() as con:
        if con is None:
            return ["standard"], []
        found = [
            r[0]
            for r in con.execute(
                "SELECT view FROM predictions WHERE dataset = ? AND run_id = ? GROUP BY view",
                [dataset, ids[0]],
            ).fetchall()
        ]
        views = sorted(found, key=lambda v: (v != "standard", v)) or ["standard"]
        labels = [
            int(r[0])
            for r in con.execute(
                "SELECT DISTINCT label FROM predictions WHERE dataset = ? AND run_id = ? AND "
                "view = ? AND label IS NOT NULL ORDER BY label",
                [dataset, ids[0], views[0]],
            ).fetchall()
        ]
    return views, labels


def _explorer_ids(
    con: Any,
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    outcome: tuple[tuple[str, str], ...],
    disagree: bool,
    factor: str | None,
    label: int | None,
    page: int,
    page_size: int,
) -> tuple[int, list[str]]:
    ids = _run_ids(path, version, dataset, models)
    if not ids:
        return 0, []
    present = set(latest_runs(path, version).query("dataset == @dataset")["model"])
    outcome = tuple((m, o) for m, o in outcome if m in present and m in models)
    cols = [f"max(CASE WHEN model = ? THEN correct::INT END) AS c{i}" for i in range(len(outcome))]
    conds = [f"c{i} = {1 if o == 'correct' else 0}" for i, (_, o) in enumerate(outcome)]
    params: list[Any] = [*(m for m, _ in outcome), dataset, *ids, view]
    fsql = ""
    if factor is not None:
        fsql = "AND regexp_replace(sample_id, '^.*/', '') IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(file_names_with_factor(factor)))
    if disagree:
        conds.append("min_pred <> max_pred")
    if label is not None:
        conds.append("label = ?")
        params.append(int(label))
    sql = (
        "WITH g AS (SELECT sample_id, any_value(label) AS label, min(pred) AS min_pred, "
        "max(pred) AS max_pred"
        + "".join(f", {c}" for c in cols)
        + f" FROM predictions WHERE dataset = ? AND run_id IN ({_marks(len(ids))}) AND view = ? "
        f"{fsql} GROUP BY sample_id), h AS (SELECT sample_id FROM g"
        + (f" WHERE {' AND '.join(conds)}" if conds else "")
        + ") SELECT sample_id, (SELECT count(*) FROM h) AS total FROM h "
        "ORDER BY sample_id LIMIT ? OFFSET ?"
    )
    rows = con.execute(sql, [*params, int(page_size), int(page) * int(page_size)]).fetchall()
    if rows:
        return int(rows[0][1]), [r[0] for r in rows]
    if page > 0:  # past the end: report the total anyway
        return _explorer_ids(
            con, path, version, dataset, view, models, outcome, disagree, factor, label, 0, 1
        )[0], []
    return 0, []


DETAIL_COLUMNS = [
    "sample_id",
    "model",
    "label",
    "pred",
    "confidence",
    "correct",
    "topk_idx",
    "topk_prob",
    "decision",
    "dataset_root",
]


def _explorer_details(
    con: Any,
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    sample_ids: Sequence[str],
) -> pd.DataFrame:
    ids = _run_ids(path, version, dataset, models)
    if not ids or not sample_ids:
        return pd.DataFrame(columns=DETAIL_COLUMNS)
    sql = (
        "SELECT sample_id, model, label, pred, confidence, correct, topk_idx, topk_prob, "
        f"decision, run_id FROM predictions WHERE dataset = ? AND run_id IN ({_marks(len(ids))}) "
        f"AND view = ? AND sample_id IN ({_marks(len(sample_ids))}) ORDER BY sample_id, model"
    )
    df = con.execute(sql, [dataset, *ids, view, *sample_ids]).df()
    return _with_root(df, latest_runs(path, version))[DETAIL_COLUMNS]


@cached
def explorer_grid(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    outcome: tuple[tuple[str, str], ...] = (),
    disagree: bool = False,
    factor: str | None = None,
    label: int | None = None,
    page: int = 0,
    page_size: int = 24,
) -> tuple[int, pd.DataFrame]:
    """The images matching the filters and one page of them with every model's prediction:
    ``(total, details)`` (see :func:`explorer_page`, :func:`explorer_details`), read through
    one short-lived connection."""
    with Store(path, lock_wait=settings.DASHBOARD_LOCK_WAIT_SECONDS).reader() as con:
        if con is None:
            return 0, pd.DataFrame(columns=DETAIL_COLUMNS)
        total, ids = _explorer_ids(
            con,
            path,
            version,
            dataset,
            view,
            models,
            outcome,
            disagree,
            factor,
            label,
            page,
            page_size,
        )
        return total, _explorer_details(con, path, version, dataset, view, models, ids)


def explorer_page(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    outcome: tuple[tuple[str, str], ...] = (),
    disagree: bool = False,
    factor: str | None = None,
    label: int | None = None,
    page: int = 0,
    page_size: int = 24,
) -> tuple[int, list[str]]:
    """Images matching the filters, one page of them: ``(total, sample_ids)`` (sorted).

    ``outcome`` pairs (model, 'correct' | 'wrong'); ``disagree`` keeps images where the
    selected models' top-1 classes differ; ``factor`` keeps images whose file name (last path
    component) has that top ImageNet-X factor; ``label`` keeps one class.
    """
    with Store(path, lock_wait=settings.DASHBOARD_LOCK_WAIT_SECONDS).reader() as con:
        if con is None:
            return 0, []
        return _explorer_ids(
            con,
            path,
            version,
            dataset,
            view,
            models,
            outcome,
            disagree,
            factor,
            label,
            page,
            page_size,
        )


def explorer_details(
    path: str,
    version: str,
    dataset: str,
    view: str,
    models: tuple[str, ...],
    sample_ids: tuple[str, ...],
) -> pd.DataFrame:
    """Per (image, model) of the given images: label, pred, confidence, correct, top-5,
    decision, dataset_root."""
    with Store(path, lock_wait=settings.DASHBOARD_LOCK_WAIT_SECONDS).reader() as con:
        if con is None:
            return pd.DataFrame(columns=DETAIL_COLUMNS)
        return _explorer_details(con, path, version, dataset, view, models, sample_ids)


def _with_root(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add each row's ``dataset_root`` from its run."""
    roots = dict(zip(runs["run_id"], runs["dataset_root"], strict=True))
    return df.assign(dataset_root=df["run_id"].map(roots))


def safe_image_path(roots: Sequence[str], sample_id: str) -> Path | None:
    """The file ``sample_id`` names inside one of the recorded dataset ``roots``, or None.

    Rejects anything that resolves outside every root (``..``, absolute paths, symlinks
    leaving the root) and anything that is not an existing regular file.
    """
    if not sample_id or "\x00" in sample_id:
        return None
    for root in roots:
        if not root:
            continue
        try:
            base = Path(root).resolve()
            candidate = (base / sample_id).resolve()
            if candidate.is_relative_to(base) and candidate != base and candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name the filesystem refuses (e.g. over 255 bytes)
            continue
    return None


def inside_any(path: str | Path, roots: Sequence[str | Path]) -> bool:
    """True when ``path`` resolves inside one of ``roots``."""
    p = Path(path).resolve()
    return any(p.is_relative_to(Path(r).resolve()) for r in roots if str(r))


def image_path(
    allowed: Sequence[str | Path], dataset: str, stored_roots: Sequence[str], sample_id: str
) -> Path | None:
    """The file of ``sample_id`` inside the dashboard's configured data roots ``allowed``.

    Looks in each run's recorded dataset folder when that folder lies inside an allowed
    root, then in ``<allowed root>/<the dataset's conventional folder>`` (a store moved to
    another machine). A store never widens what is served: anything outside ``allowed``
    (``..``, absolute paths, symlinks out, a recorded root elsewhere) is refused.
    """
    from beyond_inet.datasets import DATASETS

    candidates = [r for r in stored_roots if r and inside_any(r, allowed)]
    if dataset in DATASETS:
        candidates += [str(Path(a) / DATASETS.get(dataset).layout.subdir) for a in allowed]
    found = safe_image_path(list(dict.fromkeys(candidates)), sample_id)
    return found if found is not None and inside_any(found, allowed) else None


@functools.lru_cache(maxsize=32)
def file_names_with_factor(factor: str) -> tuple[str, ...]:
    """ImageNet val file names whose top ImageNet-X factor is ``factor``."""
    from beyond_inet.reference import IMAGENET_X_FACTORS
    from beyond_inet.scoring.metrics import load_imagenet_x_annotations

    if factor not in IMAGENET_X_FACTORS:
        raise ValueError(f"unknown ImageNet-X factor {factor!r}")
    ann = load_imagenet_x_annotations()
    return tuple(sorted(ann.loc[ann[factor].astype(bool), "file_name"].astype(str)))


def dataset_class_names(path: str, version: str, dataset: str) -> tuple[str, ...]:
    """The class names a dataset's labels index: an own dataset's (from its runs), else
    ImageNet-1k's."""
    own = own_runs(path, version)
    mine = own[own["dataset"] == dataset]["classes"] if len(own) else []
    return next((tuple(c) for c in mine if c), None) or class_names()


def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names (index -> name)."""
    from beyond_inet.reference import imagenet_class_names

    return imagenet_class_names()


@cached
def image_bytes(path: str, max_side: int) -> bytes | None:
    """The image at ``path`` (already checked by :func:`image_path`) as PNG bytes, shrunk to
    at most ``max_side`` pixels on its longer side; ``None`` when the file cannot be read as
    an image (truncated, not an image, a decompression bomb): pages show a placeholder."""
    import io

    from PIL import Image

    from beyond_inet.datasets.decode import to_rgb

    try:
        with Image.open(path) as im:
            im.load()
            rgb = to_rgb(im)
        rgb.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        rgb.save(buf, format="PNG")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return buf.getvalue()


# --------------------------------------------------------------------------- CKA

CKA_RUN_COLUMNS = [
    "run_id",
    "model_a",
    "model_b",
    "dataset",
    "n_images",
    "tokens",
    "estimator",
    "random_weights",
    "finished_at",
    "pair",
]


@cached
def cka_runs(path: str, version: str) -> pd.DataFrame:
    """The latest CKA run per (model pair, dataset, pooling), with a ``pair`` label; empty
    for a store without CKA results (or of a layout before them)."""
    if not Store(path).has_table("cka_runs"):
        return pd.DataFrame(columns=CKA_RUN_COLUMNS)
    df = _q(
        path,
        "SELECT run_id, model_a, model_b, dataset, n_images, tokens, estimator, "
        "random_weights, finished_at FROM cka_runs QUALIFY row_number() OVER (PARTITION BY "
        "model_a, model_b, dataset, tokens ORDER BY finished_at DESC, run_id) = 1 "
        "ORDER BY model_a, model_b, dataset, tokens",
        [],
        CKA_RUN_COLUMNS[:-1],
    )
    df["pair"] = [
        f"{a} x {b} ({d}, {n:,} images, {t})"
        for a, b, d, n, t in zip(
            df["model_a"], df["model_b"], df["dataset"], df["n_images"], df["tokens"], strict=True
        )
    ]
    return df


@cached
def cka_cells(path: str, version: str, run_id: str) -> pd.DataFrame:
    """One CKA run's layer x layer cells (``row``/``col`` index the two models' taps)."""
    return _q(
        path,
        "SELECT row, col, layer_a, layer_b, cka FROM cka WHERE run_id = ? ORDER BY row, col",
        [run_id],
        ["row", "col", "layer_a", "layer_b", "cka"],
    )


# --------------------------------------------------------------------------- paired


#: The stored paired comparison's columns (``PairedRecord``).
PAIRED_COLUMNS = [name for name, _ in PAIRED_SQL_COLUMNS]


@cached
def stored_paired(
    path: str, version: str, model_a: str, model_b: str, dataset: str, view: str
) -> pd.DataFrame:
    """The paired comparison ``precompute`` stored (table ``paired``) of the latest runs of
    ``model_a`` and ``model_b`` on ``dataset`` / ``view``, in either order (its
    ``model_a`` may be ``model_b``: :func:`dashboard.frames.paired_summary` orients it);
    no row when the store has none (runs stored by separate invocations before the
    ``precompute`` that fills it, a store without the table)."""
    runs = latest_runs(path, version)
    runs = runs[runs["dataset"] == dataset]
    ids = dict(zip(runs["model"], runs["run_id"], strict=True))
    if model_a not in ids or model_b not in ids or not Store(path).has_table("paired"):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    a, b = ids[model_a], ids[model_b]
    return _q(
        path,
        f"SELECT {', '.join(PAIRED_COLUMNS)} FROM paired WHERE dataset = ? AND view = ? "
        "AND ((run_a = ? AND run_b = ?) OR (run_a = ? AND run_b = ?)) LIMIT 1",
        [dataset, view, a, b, b, a],
        PAIRED_COLUMNS,
    )


@cached
def paired_outcomes(
    path: str, version: str, model_a: str, model_b: str, dataset: str, view: str
) -> pd.DataFrame:
    """Per scored image of ``dataset`` / ``view`` (labelled, or decided by the dataset's
    rule) seen by both models' latest runs (joined by ``sample_id``): ``correct_a``,
    ``correct_b``, ``pred_a``, ``pred_b``, ``label``."""
    runs = latest_runs(path, version)
    runs = runs[runs["dataset"] == dataset]
    ids = dict(zip(runs["model"], runs["run_id"], strict=True))
    cols = ["sample_id", "label", "correct_a", "correct_b", "pred_a", "pred_b"]
    if model_a not in ids or model_b not in ids:
        return pd.DataFrame(columns=cols)
    return _q(
        path,
        "SELECT a.sample_id, a.label, a.correct AS correct_a, b.correct AS correct_b, "
        "coalesce(a.decision, a.pred::VARCHAR) AS pred_a, "
        "coalesce(b.decision, b.pred::VARCHAR) AS pred_b FROM predictions a "
        "JOIN predictions b USING (sample_id) WHERE a.run_id = ? AND a.view = ? "
        "AND b.run_id = ? AND b.view = ? AND (a.label IS NOT NULL OR a.decision IS NOT NULL) "
        "ORDER BY a.sample_id",
        [ids[model_a], view, ids[model_b], view],
        cols,
    )


# --------------------------------------------------------------------------- OOD detection


@cached
def ood_scores(path: str, version: str, model: str, dataset: str, score: str) -> pd.DataFrame:
    """The per-image OOD ``score`` (:data:`beyond_inet.scoring.ood.SCORES`: higher = more
    in-distribution) of the latest run of ``model`` on the OOD set ``dataset`` and of the
    in-distribution run it was scored against (recorded in its settings):
    ``in_distribution`` (bool), ``value``; empty without such runs."""
    from beyond_inet.scoring.ood import SCORES

    cols = ["in_distribution", "value"]
    column = SCORES[score]  # a column name from the mapping, never user input
    ids = _run_ids(path, version, dataset, (model,))
    if not ids:
        return pd.DataFrame(columns=cols)
    return _q(
        path,
        f"WITH ref AS (SELECT json_extract_string(settings, '$.ood.in_distribution_run') AS id "
        f"FROM runs WHERE run_id = ?) SELECT p.run_id <> ? AS in_distribution, "
        f"p.{column} AS value FROM predictions p WHERE (p.run_id = ? "
        f"OR p.run_id = (SELECT id FROM ref)) AND p.view = 'standard' "
        f"AND p.{column} IS NOT NULL ORDER BY in_distribution, p.sample_id",
        [ids[0], ids[0], ids[0]],
        cols,
    )


#: Per-image columns :func:`per_image_values` may read (never user input).
PER_IMAGE_VALUES = ("correct", "confidence", "pred", "decision")


@cached
def per_image_values(
    path: str, version: str, dataset: str, view: str, models: tuple[str, ...], column: str
) -> pd.DataFrame:
    """``sample_id`` x model values of one per-image ``column`` (one of
    :data:`PER_IMAGE_VALUES`) of the latest runs, labelled images (or all where the
    dataset decides)."""
    if column not in PER_IMAGE_VALUES:
        raise ValueError(f"column must be one of {PER_IMAGE_VALUES}, got {column!r}")
    ids = _run_ids(path, version, dataset, models)
    if not ids:
        return pd.DataFrame()
    df = _q(
        path,
        f"SELECT p.sample_id, r.model, p.{column} AS v FROM predictions p JOIN runs r USING "
        f"(run_id) WHERE p.run_id IN ({_marks(len(ids))}) AND p.view = ? "
        "AND (p.label IS NOT NULL OR p.decision IS NOT NULL)",
        [*ids, view],
        ["sample_id", "model", "v"],
    )
    return df.pivot_table(index="sample_id", columns="model", values="v", aggfunc="first")


@cached
def overview_p_values(
    path: str, version: str, column: str, best: str, others: tuple[str, ...]
) -> list[float]:
    """:func:`dashboard.frames.paired_p_values` of an Overview column's paired test
    between the latest runs of ``best`` and each of ``others`` (cached: the bootstrap runs
    once per store version, whatever the significance level)."""
    from dashboard.frames import PAIRED_TESTS, paired_p_values

    test = PAIRED_TESTS[column]
    models = (best, *others)
    values = {
        c: per_image_values(path, version, test.dataset, "standard", models, c)
        for c in test.columns
    }
    return paired_p_values(test, values, best, others)


# --------------------------------------------------------------------------- your own images


@cached
def own_runs(path: str, version: str) -> pd.DataFrame:
    """The latest runs on own datasets (``own-<name>``): ``dataset, model, run_id, views,
    dataset_root, random_weights, n_samples, finished_at, classes, content`` (the class
    names and the dataset's fingerprint from the run's settings)."""
    import json

    from beyond_inet.datasets.own import STORED_PREFIX

    cols = [
        "dataset",
        "model",
        "run_id",
        "views",
        "dataset_root",
        "random_weights",
        "n_samples",
        "finished_at",
        "classes",
        "content",
    ]
    runs = latest_runs(path, version)
    runs = runs[runs["dataset"].str.startswith(STORED_PREFIX)]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    settings = _q(
        path,
        f"SELECT run_id, settings FROM runs WHERE run_id IN ({_marks(len(runs))})",
        runs["run_id"].tolist(),
        ["run_id", "settings"],
    )
    own = {r.run_id: json.loads(r.settings).get("own", {}) for r in settings.itertuples()}
    return runs.assign(
        views=runs["views"].map(json.loads),
        classes=runs["run_id"].map(lambda r: tuple(own[r].get("classes", ()))),
        content=runs["run_id"].map(lambda r: own[r].get("content") or ""),
    )[cols].sort_values(["dataset", "model"], ignore_index=True)


@cached
def own_predictions(
    path: str, version: str, dataset: str, view: str, models: tuple[str, ...]
) -> pd.DataFrame:
    """Per test image of the latest runs of ``models`` on an own dataset's method
    (``view``): ``model, sample_id, label, pred, correct, confidence``."""
    cols = ["model", "sample_id", "label", "pred", "correct", "confidence"]
    ids = _run_ids(path, version, dataset, models)
    if not ids:
        return pd.DataFrame(columns=cols)
    return _q(
        path,
        f"SELECT model, sample_id, label, pred, correct, confidence FROM predictions "
        f"WHERE dataset = ? AND run_id IN ({_marks(len(ids))}) AND view = ? "
        "ORDER BY model, sample_id",
        [dataset, *ids, view],
        cols,
    )


@cached
def paired_among(path: str, version: str, dataset: str, models: tuple[str, ...]) -> pd.DataFrame:
    """Every stored paired comparison between the latest runs of ``models`` on ``dataset``
    (all views)."""
    ids = _run_ids(path, version, dataset, models)
    if len(ids) < 2 or not Store(path).has_table("paired"):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    marks = _marks(len(ids))
    return _q(
        path,
        f"SELECT {', '.join(PAIRED_COLUMNS)} FROM paired WHERE dataset = ? "
        f"AND run_a IN ({marks}) AND run_b IN ({marks})",
        [dataset, *ids, *ids],
        PAIRED_COLUMNS,
    )
