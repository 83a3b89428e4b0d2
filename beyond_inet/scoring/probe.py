"""The linear probe of the transfer evaluation: pure functions on feature arrays.

Multinomial logistic regression (scikit-learn's ``LogisticRegression``, L-BFGS) on
L2-normalised frozen features. The inverse regularisation strength ``C`` is chosen on the
val split from a logarithmic grid (highest val top-1; ties go to the smaller ``C``, the
stronger regularisation), then the probe is refit on train + val and scored on test.

Why scikit-learn: the problem is convex, so L-BFGS reaches the same optimum every time
(deterministic, no learning-rate schedule to tune), and at VTAB-1k's 1,000 training images
a fit takes well under a second on a CPU. A GPU solver only pays off on full training sets
of hundreds of thousands of images (see ``benchmarks/bench_transfer.py``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: The C grid: 10^-1 ... 10^4 (features are unit-norm, so weak regularisation is common).
C_GRID: tuple[float, ...] = tuple(float(10.0**k) for k in range(-1, 5))
MAX_ITER = 1000


@dataclass(frozen=True)
class ProbeSettings:
    """The probe's hyper-parameter grid and solver budget (recorded with every run)."""

    grid: tuple[float, ...] = C_GRID
    max_iter: int = MAX_ITER

    def to_dict(self) -> dict[str, object]:
        """As recorded in a run's settings."""
        return {
            "solver": "sklearn LogisticRegression(lbfgs, multinomial)",
            "features": "L2-normalised",
            "c_grid": list(self.grid),
            "max_iter": self.max_iter,
            "selection": "val top-1, then refit on train+val",
        }


@dataclass
class ProbeResult:
    """The chosen ``c``, val top-1 per grid value, and test class probabilities
    ``[n_test, n_classes]`` of the probe refit on train + val."""

    c: float
    val_top1: dict[float, float]
    probs: np.ndarray
    seconds: float
    n_train: int
    n_val: int
    n_test: int
    extra: dict[str, float] = field(default_factory=dict)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):  # type: ignore[no-untyped-def]
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=max_iter).fit(x, y)


def class_probabilities(model, x: np.ndarray, n_classes: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``predict_proba`` spread onto all ``n_classes`` (classes absent from training: 0)."""
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    n_classes: int,
    settings: ProbeSettings = ProbeSettings(),
) -> ProbeResult:
    """Choose ``C`` on ``val``, refit on train + val, return test probabilities.

    ``train`` / ``val``: (features ``[n, d]``, labels ``[n]`` in ``0..n_classes-1``).
    A training set with a single class predicts that class.
    """
    start = time.perf_counter()
    (xt, yt), (xv, yv) = train, val
    if not len(xv):  # no val image (a tiny pool, or none decodable): no selection
        xv, yv = np.zeros((0, xt.shape[1])), np.zeros(0, dtype=np.int64)
    xt, xv, xs = l2_normalise(xt), l2_normalise(xv), l2_normalise(test_x)
    xa, ya = np.concatenate([xt, xv]), np.concatenate([yt, yv])
    if len(np.unique(ya)) < 2:
        probs = np.zeros((len(xs), n_classes))
        probs[:, int(ya[0])] = 1.0
        return ProbeResult(
            float("nan"), {}, probs, time.perf_counter() - start, len(yt), len(yv), len(xs)
        )
    scores: dict[float, float] = {}
    if len(np.unique(yt)) >= 2 and len(yv):
        for c in settings.grid:
            scores[c] = float(np.mean(_fit(xt, yt, c, settings.max_iter).predict(xv) == yv))
    best = choose_c(scores, settings.grid)
    final = _fit(xa, ya, best, settings.max_iter)
    probs = class_probabilities(final, xs, n_classes)
    return ProbeResult(best, scores, probs, time.perf_counter() - start, len(yt), len(yv), len(xs))


def choose_c(val_top1: dict[float, float], grid: Sequence[float]) -> float:
    """The grid value with the highest val top-1, the smallest such on ties; the grid's
    middle value when there are no val scores."""
    if not val_top1:
        return float(sorted(grid)[len(grid) // 2])
    top = max(val_top1.values())
    return float(min(c for c, s in val_top1.items() if s == top))


def mean_per_class_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of each class's accuracy."""
    labels = np.asarray(labels)
    hits = np.asarray(pred) == labels
    return float(np.mean([hits[labels == c].mean() for c in np.unique(labels)]))
