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
on arrays here: a least-squares line of logit(OOD accuracy) on logit(ImageNet accuracy) over
the baseline models, and each model's OOD accuracy minus the line at its ImageNet accuracy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
    """logit(OOD) = slope * logit(ImageNet) + intercept over ``n`` baseline models;
    ``resid_std``: the residuals' standard deviation in logit units (the band)."""

    dataset: str
    slope: float
    intercept: float
    n: int
    resid_std: float

    def predict(self, imagenet_acc: np.ndarray | float) -> np.ndarray:
        """The OOD accuracy the line predicts at an ImageNet accuracy."""
        return expit(self.slope * logit(imagenet_acc) + self.intercept)

    def band(
        self, imagenet_acc: np.ndarray | float, z: float = 1.96
    ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high): the line +- ``z`` residual standard deviations, in accuracy units."""
        centre = self.slope * logit(imagenet_acc) + self.intercept
        return expit(centre - z * self.resid_std), expit(centre + z * self.resid_std)


def fit_baseline(dataset: str, imagenet_acc: np.ndarray, ood_acc: np.ndarray) -> Fit:
    """Least-squares line in logit space (scipy's ``linregress``) over the baseline models'
    (ImageNet, OOD) accuracies; NaN pairs are dropped."""
    from scipy.stats import linregress

    x, y = np.asarray(imagenet_acc, float), np.asarray(ood_acc, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        raise ValueError(f"{dataset}: {keep.sum()} baseline models; a fit needs at least 3")
    lx, ly = logit(x[keep]), logit(y[keep])
    r = linregress(lx, ly)
    resid = ly - (r.slope * lx + r.intercept)
    return Fit(
        dataset, float(r.slope), float(r.intercept), int(keep.sum()), float(np.std(resid, ddof=2))
    )


def effective_robustness(fit: Fit, imagenet_acc: np.ndarray, ood_acc: np.ndarray) -> np.ndarray:
    """OOD accuracy minus the baseline line's prediction at the model's ImageNet accuracy
    (accuracy units; > 0 = more robust than ImageNet-trained models of equal accuracy)."""
    return np.asarray(ood_acc, float) - fit.predict(imagenet_acc)


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


def fits(directory: Path = CATALOG_DIR) -> dict[str, Fit]:
    """The shipped effective-robustness fits by dataset."""
    df = _read(str(directory), FITS)
    return {
        r.dataset: Fit(r.dataset, float(r.slope), float(r.intercept), int(r.n), float(r.resid_std))
        for r in df.itertuples()
    }


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
