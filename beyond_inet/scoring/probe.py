"""The linear probe of the transfer evaluation: pure functions on feature arrays.

Multinomial logistic regression (scikit-learn's ``LogisticRegression``, L-BFGS) on
L2-normalised frozen features, minimising exactly

    C * sum_i cross_entropy(softmax(W x_i + b), y_i) + 0.5 * ||W||^2     (b not penalised)

to convergence: gradient tolerance :data:`TOL` (1e-8: within ~1e-9 of the optimal objective
on VTAB-1k-sized problems; scikit-learn's default 1e-4 stops up to tens of percent above it
at weak regularisation) and up to :data:`MAX_ITER`
iterations; a fit that hits the cap is counted in ``ProbeResult.extra``. The inverse
regularisation strength ``C`` is chosen on the val split (highest val top-1; ties go to the
smaller ``C``, the stronger regularisation) over a log grid of 10^-6 ... 10^6, one value per
decade (:data:`C_GRID`, the range of CLIP's and VTAB's sweeps), refined around the best with
:data:`REFINE_STEPS` log-spaced values between its two neighbours; then the probe is refit on
train + val at that ``C`` and scored on test. Fits go up the grid warm-started from the
previous ``C``'s optimum, the refinement from its nearest tried value, the refit from the
chosen ``C``'s fit (the problem is strictly convex: the optimum does not depend on the start,
only the time to reach it).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: The coarse C grid: 10^-6 ... 10^6, one value per decade (CLIP's and VTAB's range).
C_GRID: tuple[float, ...] = tuple(float(10.0**k) for k in range(-6, 7))
#: Values between the best coarse C's two neighbours (log-spaced, both ends excluded).
REFINE_STEPS = 7
#: Gradient tolerance of L-BFGS (scikit-learn's ``tol``) and its iteration cap.
TOL = 1e-8
MAX_ITER = 20_000


@dataclass(frozen=True)
class ProbeSettings:
    """The probe's C grid, refinement and solver budget (recorded with every run)."""

    grid: tuple[float, ...] = C_GRID
    max_iter: int = MAX_ITER
    tol: float = TOL
    refine_steps: int = REFINE_STEPS

    def to_dict(self) -> dict[str, object]:
        """As recorded in a run's settings."""
        return {
            "solver": "sklearn LogisticRegression(lbfgs, multinomial), warm-started up the grid",
            "objective": "C * sum cross-entropy + 0.5 * ||W||^2 (intercept not penalised)",
            "features": "L2-normalised",
            "c_grid": list(self.grid),
            "refine_steps": self.refine_steps,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "selection": "val top-1 (ties: smaller C), then refit on train+val",
        }

    def refinement(self, best: float) -> tuple[float, ...]:
        """The values tried between ``best``'s neighbours on the coarse grid."""
        grid = sorted(self.grid)
        i = grid.index(best)
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        if self.refine_steps <= 0 or lo == hi:
            return ()
        inner = np.geomspace(lo, hi, self.refine_steps + 2)[1:-1]
        return tuple(float(c) for c in inner if not np.isclose(c, best, rtol=1e-12))


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
    #: val class probabilities of the probe fitted on train at ``c`` (before the refit on
    #: train + val): what a temperature is fitted on; ``None`` without a val selection
    val_probs: np.ndarray | None = None


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class _Solver:
    """scikit-learn's model refit at each C, each fit started from a given optimum (warm
    start) when it has the same classes; counts the fits that stopped at the iteration cap
    and keeps every optimum (C -> coef, intercept, classes)."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.capped = 0
        self.optima: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.models: dict[float, object] = {}

    def fit(self, x: np.ndarray, y: np.ndarray, c: float, start: float | None = None):  # type: ignore[no-untyped-def]
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(
            C=c, tol=self.settings.tol, max_iter=self.settings.max_iter, warm_start=True
        )
        if start is not None and np.array_equal(self.optima[start][2], np.unique(y)):
            model.coef_, model.intercept_ = (a.copy() for a in self.optima[start][:2])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        self.capped += int(np.max(model.n_iter_) >= self.settings.max_iter)
        self.optima[c] = (model.coef_, model.intercept_, model.classes_)
        self.models[c] = model
        return model


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
    solver = _Solver(settings)
    if len(np.unique(yt)) >= 2 and len(yv):
        previous = None
        for c in sorted(settings.grid):  # up the grid: each fit starts at the last optimum
            scores[c] = float(np.mean(solver.fit(xt, yt, c, previous).predict(xv) == yv))
            previous = c
        for c in settings.refinement(choose_c(scores, settings.grid)):
            near = min(solver.optima, key=lambda t: abs(np.log(t) - np.log(c)))
            scores[c] = float(np.mean(solver.fit(xt, yt, c, near).predict(xv) == yv))
    best = choose_c(scores, settings.grid)
    val_probs = (
        class_probabilities(solver.models[best], xv, n_classes) if best in solver.models else None
    )
    final = solver.fit(xa, ya, best, best if best in solver.optima else None)
    probs = class_probabilities(final, xs, n_classes)
    extra = {"fits_at_iteration_cap": float(solver.capped)}
    return ProbeResult(
        best,
        dict(sorted(scores.items())),
        probs,
        time.perf_counter() - start,
        len(yt),
        len(yv),
        len(xs),
        extra,
        val_probs,
    )


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
