"""The model catalogue: timm's and open_clip's published per-model results, in one table.

``data/catalog/`` ships two Parquet tables built by :mod:`beyond_inet.catalog.build` from
the libraries' own CSVs (``data/catalog/sources/``, unchanged, with their source commits):

* ``results.parquet`` — long format, one row per (library, model_id, dataset, metric):
  ``value`` (accuracies 0-1) and ``source``; includes the derived
  ``effective_robustness`` rows.
* ``models.parquet`` — one row per model (a weight, and for timm the resolution it was
  evaluated at) with its attributes: library, name (``precompute``'s model name), arch, tag,
  family, training data, zero-shot or supervised, params, GMACs, input size, crop,
  interpolation, throughput.

Effective robustness (Taori et al. 2020, as imagenet-testbed computes it) is pure functions
on arrays here: a least-squares line of logit(OOD accuracy) on logit(x) over the baseline
models — x the ImageNet val accuracy on the shift's own classes where the dataset has a class
subset (ImageNet-A, -R), for ImageNet-A piecewise either side of ResNet-50's accuracy — and
each model's OOD accuracy minus the line at its x.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from beyond_inet.models.base import PUBLISHED_ONLY as PUBLISHED_ONLY  # re-exported

CATALOG_DIR = Path(__file__).resolve().parents[2] / "data" / "catalog"
RESULTS = "results.parquet"
MODELS = "models.parquet"
FITS = "effective_robustness_fits.csv"
#: The x axis of every effective-robustness fit.
REFERENCE = ("imagenet-val", "top1")
#: logit() of accuracies is taken on values clipped to [EPS, 1 - EPS].
EPS = 1e-4


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)) of accuracies in 0-1 (clipped away from 0 and 1)."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def expit(z: np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`logit`."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Fit:
    """One line, logit(OOD) = slope * logit(x) + intercept, over ``n`` baseline models whose
    x lies in ``[x_low, x_high)``; ``resid_std``: the residuals' standard deviation in logit
    units (the band)."""

    dataset: str
    slope: float
    intercept: float
    n: int
    resid_std: float
    x_low: float = 0.0
    x_high: float = 1.0

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """The OOD accuracy the line predicts at an x-axis accuracy."""
        return expit(self.slope * logit(x) + self.intercept)

    def band(self, x: np.ndarray | float, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """(low, high): the line +- ``z`` residual standard deviations, in accuracy units."""
        centre = self.slope * logit(x) + self.intercept
        return expit(centre - z * self.resid_std), expit(centre + z * self.resid_std)


@dataclass(frozen=True)
class Baseline:
    """The baseline of one shift dataset on one x axis (``imagenet-val`` top-1, or the
    class-subset val accuracy ``imagenet-{a,r}-clean``): one line, or, for ImageNet-A as
    imagenet-testbed fits it, two lines either side of a pivot (ResNet-50's accuracy). Each
    x is predicted by the piece whose ``[x_low, x_high)`` holds it."""

    dataset: str
    axis: str
    pieces: tuple[Fit, ...]

    @property
    def n(self) -> int:
        """Baseline models over all pieces."""
        return sum(p.n for p in self.pieces)

    def _each(
        self, x: np.ndarray | float, value: Callable[[Fit, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``value(piece, x)`` of the piece that applies at each x."""
        xs = np.asarray(x, dtype=np.float64)
        lows = np.array([p.x_low for p in self.pieces])
        which = np.clip(np.searchsorted(lows, xs, side="right") - 1, 0, len(lows) - 1)
        stacked = np.stack([np.broadcast_to(value(p, xs), xs.shape) for p in self.pieces])
        return np.take_along_axis(stacked, np.asarray(which)[None, ...], axis=0)[0]

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """The OOD accuracy the baseline predicts at an x-axis accuracy."""
        return self._each(x, Fit.predict)

    def band(self, x: np.ndarray | float, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the piece that applies at each x (see :meth:`Fit.band`)."""
        return (
            self._each(x, lambda p, xs: p.band(xs, z)[0]),
            self._each(x, lambda p, xs: p.band(xs, z)[1]),
        )


def fit_line(
    dataset: str, x: np.ndarray, y: np.ndarray, x_low: float = 0.0, x_high: float = 1.0
) -> Fit:
    """Least-squares line in logit space (scipy's ``linregress``) over the baseline models'
    (x, OOD) accuracies; NaN pairs are dropped."""
    from scipy.stats import linregress

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        raise ValueError(f"{dataset}: {keep.sum()} baseline models; a fit needs at least 3")
    lx, ly = logit(x[keep]), logit(y[keep])
    r = linregress(lx, ly)
    resid = ly - (r.slope * lx + r.intercept)
    return Fit(
        dataset,
        float(r.slope),
        float(r.intercept),
        int(keep.sum()),
        float(np.std(resid, ddof=2)),
        x_low,
        x_high,
    )


def fit_baseline(
    dataset: str,
    x: np.ndarray,
    y: np.ndarray,
    axis: str = "imagenet-val",
    pivot: float | None = None,
) -> Baseline:
    """The baseline of ``dataset`` on ``axis`` from the baseline models' (x, OOD) accuracies:
    one logit-space line, or with ``pivot`` (imagenet-testbed's ImageNet-A fit) one line
    over the models with x < pivot and one over those with x > pivot."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if pivot is None or not np.isfinite(pivot):
        return Baseline(dataset, axis, (fit_line(dataset, x, y),))
    below, above = x < pivot, x > pivot
    return Baseline(
        dataset,
        axis,
        (
            fit_line(dataset, x[below], y[below], 0.0, pivot),
            fit_line(dataset, x[above], y[above], pivot, 1.0),
        ),
    )


def effective_robustness(fit: Baseline, x: np.ndarray, ood_acc: np.ndarray) -> np.ndarray:
    """OOD accuracy minus the baseline's prediction at the model's x-axis accuracy
    (accuracy units; > 0 = more robust than ImageNet-trained models of equal accuracy)."""
    return np.asarray(ood_acc, float) - fit.predict(x)


def pareto_front(
    x: np.ndarray, y: np.ndarray, maximize_x: bool = True, maximize_y: bool = True
) -> np.ndarray:
    """Boolean mask of the points no other point beats on both axes (NaN never on it)."""
    xs = (1.0 if maximize_x else -1.0) * np.asarray(x, float)
    ys = (1.0 if maximize_y else -1.0) * np.asarray(y, float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    out = np.zeros(len(xs), dtype=bool)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((-ys[idx], -xs[idx]))]  # by x descending, then y descending
    best_y = -np.inf
    for i in order:
        if ys[i] > best_y:
            out[i] = True
            best_y = ys[i]
    return out


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=4)
def _read(directory: str, name: str) -> pd.DataFrame:
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"The model catalogue {path} is missing; rebuild it with "
            "`python -m beyond_inet.catalog.build` (see data/catalog/README.md)."
        )
    return pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)


def results(directory: Path = CATALOG_DIR) -> pd.DataFrame:
    """The long table (a copy): library, model_id, dataset, metric, value, source."""
    return _read(str(directory), RESULTS).copy()


def models(directory: Path = CATALOG_DIR) -> pd.DataFrame:
    """One row per catalogue model with its attributes (a copy)."""
    return _read(str(directory), MODELS).copy()


@functools.lru_cache(maxsize=4)
def model_names(directory: Path = CATALOG_DIR) -> tuple[str, ...]:
    """Every catalogue model's ``precompute`` name (each weight once), sorted."""
    return tuple(sorted(set(_read(str(directory), MODELS)["name"])))


def baselines(directory: Path = CATALOG_DIR) -> dict[tuple[str, str], Baseline]:
    """The shipped effective-robustness baselines by (dataset, x axis)."""
    df = _read(str(directory), FITS)
    out: dict[tuple[str, str], Baseline] = {}
    for (dataset, axis), g in df.groupby(["dataset", "axis"], sort=False):
        pieces = tuple(
            Fit(
                dataset,
                float(r.slope),
                float(r.intercept),
                int(r.n),
                float(r.resid_std),
                float(r.x_low),
                float(r.x_high),
            )
            for r in g.sort_values("x_low").itertuples()
        )
        out[(str(dataset), str(axis))] = Baseline(str(dataset), str(axis), pieces)
    return out


def fits(directory: Path = CATALOG_DIR) -> dict[str, Baseline]:
    """The shipped baselines on the ImageNet val top-1 axis, by dataset (the finder's
    default axes)."""
    return {d: b for (d, axis), b in baselines(directory).items() if axis == REFERENCE[0]}


def column(dataset: str, metric: str) -> str:
    """The wide table's column of a (dataset, metric): ``<dataset> <metric>``;
    effective robustness is ``effective_robustness:<dataset>``."""
    return (
        f"effective_robustness:{dataset}"
        if metric == "effective_robustness"
        else f"{dataset} {metric}"
    )


@functools.lru_cache(maxsize=4)
def _wide(directory: str) -> pd.DataFrame:
    res = _read(directory, RESULTS)
    er = res["metric"] == "effective_robustness"  # column() for every row, vectorised
    cols = ("effective_robustness:" + res["dataset"]).where(
        er, res["dataset"] + " " + res["metric"]
    )
    values = res.assign(col=cols).pivot(
        index=["library", "model_id"], columns="col", values="value"
    )
    values.columns.name = None
    table = _read(directory, MODELS).merge(
        values.reset_index(), on=["library", "model_id"], how="left"
    )
    return table


def wide(directory: Path = CATALOG_DIR) -> pd.DataFrame:
    """One row per model: its attributes and one column per (dataset, metric) (a copy)."""
    return _wide(str(directory)).copy()


def published_throughput(directory: Path = CATALOG_DIR) -> dict[str, tuple[float, float]]:
    """Model name (and the paper's alias) -> timm's published (GPU, CPU) img/s (RTX 4090
    with AMP; i7-12700H fp32; NaN where none), each weight at its own size."""
    mods = _read(str(directory), MODELS)
    mods = mods[~mods["model_id"].str.contains("@", regex=False)]
    out: dict[str, tuple[float, float]] = {}
    for name, alias, gpu, cpu in zip(
        mods["name"], mods["paper_model"], mods["throughput_gpu"], mods["throughput_cpu"],
        strict=True,
    ):  # fmt: skip
        out[name] = (float(gpu), float(cpu))
        if isinstance(alias, str) and alias:
            out[alias] = out[name]
    return out
