"""OOD detection: can a classifier tell that an image belongs to none of its classes?

Each image gets a score from the model's outputs, higher meaning "more in-distribution":

* ``msp``: the maximum softmax probability (Hendrycks & Gimpel 2017);
* ``max_logit``: the largest logit (Hendrycks et al. 2022);
* ``energy``: ``logsumexp`` of the logits, the negative energy at T = 1 (Liu et al. 2020).

An OOD set's images are scored against the in-distribution images (ImageNet val) of the
same model. The metrics follow OpenOOD v1.5's evaluator, with in-distribution as the
positive class:

* ``auroc``: the probability that an in-distribution image outscores an OOD image (ties
  count half);
* ``fpr95``: the fraction of OOD images scored above the threshold that keeps 95% of the
  in-distribution images (that threshold: the ``floor(0.95 n)``-th largest
  in-distribution score; lower is better);
* ``aupr_in`` / ``aupr_out``: the area under the precision-recall curve (trapezoidal, as
  ``sklearn.metrics.auc`` of ``precision_recall_curve``) with in-distribution / OOD as the
  positive class (OOD ranked by the negated score).

All functions are pure (numpy, float64); the tests check them against scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from beyond_inet.records import ImageRecords, MetricRow
from beyond_inet.scoring.metric_specs import OOD_SCORES

#: Score name -> the per-image column it reads (higher = more in-distribution).
SCORES: dict[str, str] = dict(
    zip(OOD_SCORES, ("confidence", "max_logit", "logsumexp"), strict=True)
)
#: The metrics of each score (names ``<metric>:<score>``).
METRICS: tuple[str, ...] = ("auroc", "fpr95", "aupr_in", "aupr_out")
#: The recall of in-distribution images at which ``fpr95`` is read.
TPR = 0.95


def auroc(in_dist: np.ndarray, ood: np.ndarray) -> float:
    """P(in-distribution score > OOD score) + P(equal) / 2 (Mann-Whitney, mid-ranks)."""
    from scipy.stats import rankdata

    n_in, n_out = len(in_dist), len(ood)
    if not (n_in and n_out):
        return math.nan
    ranks = rankdata(np.concatenate([in_dist, ood]).astype(np.float64))
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def fpr_at_tpr(in_dist: np.ndarray, ood: np.ndarray, tpr: float = TPR) -> float:
    """The fraction of OOD scores above the ``floor(tpr * n)``-th largest in-distribution
    score (OpenOOD's ``fpr_recall``)."""
    keep = math.floor(tpr * len(in_dist))
    if keep < 1 or not len(ood):
        return math.nan
    threshold = np.sort(np.asarray(in_dist, np.float64))[-keep]
    return float(np.mean(np.asarray(ood, np.float64) > threshold))


def aupr(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the precision-recall curve of ``positive`` scored above ``negative``:
    one point per distinct score (descending), plus (recall 0, precision 1), joined by
    the trapezoidal rule."""
    if not (len(positive) and len(negative)):
        return math.nan
    scores = np.concatenate([positive, negative]).astype(np.float64)
    is_pos = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end of each score
    tp = np.cumsum(is_pos)[last]
    predicted = last + 1.0
    precision = np.r_[1.0, tp / predicted]
    recall = np.r_[0.0, tp / len(positive)]
    return float(np.trapezoid(precision, recall))


def detection(in_dist: np.ndarray, ood: np.ndarray) -> dict[str, float]:
    """Every metric of one score: ``auroc``, ``fpr95``, ``aupr_in``, ``aupr_out``."""
    in_dist = np.asarray(in_dist, np.float64)
    ood = np.asarray(ood, np.float64)
    return {
        "auroc": auroc(in_dist, ood),
        "fpr95": fpr_at_tpr(in_dist, ood),
        "aupr_in": aupr(in_dist, ood),
        "aupr_out": aupr(-ood, -in_dist),
    }


def scores_of(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each score's finite per-image values from the per-image columns (``confidence``,
    ``max_logit``, ``logsumexp``: arrays, or ``None``); a score whose column is absent or
    all NULL (a run stored before beyond-inet kept logit scores) is left out."""
    out = {}
    for name, column in SCORES.items():
        values = columns.get(column)
        if values is None:
            continue
        values = np.asarray(values, np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            out[name] = values
    return out


def record_scores(rec: ImageRecords) -> dict[str, np.ndarray]:
    """:func:`scores_of` a view's records."""
    return scores_of({column: getattr(rec, column) for column in SCORES.values()})


def ood_rows(in_dist: Mapping[str, np.ndarray], n_in: int, ood: ImageRecords) -> list[MetricRow]:
    """The OOD detection rows of an OOD set's records against the in-distribution scores
    (``in_dist``: :func:`scores_of` the reference run's ``n_in`` images):
    ``<metric>:<score>`` for every score both have, and ``ood_reference_images``."""
    mine = record_scores(ood)
    rows = [MetricRow("ood_reference_images", float(n_in))]
    for score in SCORES:
        if score in mine and score in in_dist:
            got = detection(in_dist[score], mine[score])
            rows += [MetricRow(f"{metric}:{score}", got[metric]) for metric in METRICS]
    return rows
