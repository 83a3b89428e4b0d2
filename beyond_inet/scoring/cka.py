"""Linear CKA between layers: the minibatch unbiased-HSIC estimator and the biased
full-batch estimator that most published heatmaps use.

Nguyen, Raghu & Kornblith (2021, "Do Wide and Deep Networks Learn the Same Things?"):
for minibatches ``i`` of the same images seen by two representations,

    CKA(X, Y) = sum_i HSIC_1(K_i, L_i) / sqrt(sum_i HSIC_1(K_i, K_i) * sum_i HSIC_1(L_i, L_i))

with linear kernels ``K_i = X_i X_iᵀ``, ``L_i = Y_i Y_iᵀ`` and the unbiased estimator
``HSIC_1`` (Song et al. 2012). Only one minibatch of activations is held at a time. All
functions are pure (numpy, float64); :class:`MinibatchCKA` accumulates the sums.

Kornblith et al. (2019) compute CKA on all images at once with the biased HSIC, i.e.
``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)`` on column-centred activations
(:class:`FullBatchCKA`, which keeps every image's pooled taps). The two differ
most where the true similarity is low: on unrelated layers the biased estimate stays well
above 0 at a few thousand images, the unbiased one does not. ``--cka-estimator`` chooses;
:data:`CKA_ESTIMATORS` names each, and the name is stored with the run and shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: HSIC_1 needs at least this many images per minibatch (its normaliser is n(n-3)).
MIN_BATCH = 4


def _gram_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The zero-diagonal linear Gram matrix of ``x`` [n, d], flattened, with its row sums and
    total."""
    x = np.asarray(x, dtype=np.float64)
    k = x @ x.T
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1)
    return k.reshape(-1), rows, float(rows.sum())


def hsic1_matrix(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """``HSIC_1(K_a, L_b)`` for every layer ``a`` of ``xs`` and ``b`` of ``ys`` on one
    minibatch (each array ``[n, d_layer]``, the same ``n`` images): ``[len(xs), len(ys)]``.

    HSIC_1(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3)),
    K̃, L̃ = K, L with zeroed diagonals.
    """
    n = len(xs[0])
    if n < MIN_BATCH:
        raise ValueError(f"HSIC_1 needs at least {MIN_BATCH} images per minibatch, got {n}")
    a = [_gram_stats(x) for x in xs]
    b = a if ys is xs else [_gram_stats(y) for y in ys]
    va, ra, sa = (np.stack([s[0] for s in a]), np.stack([s[1] for s in a]), [s[2] for s in a])
    vb, rb, sb = (np.stack([s[0] for s in b]), np.stack([s[1] for s in b]), [s[2] for s in b])
    trace = va @ vb.T
    totals = np.outer(sa, sb) / ((n - 1) * (n - 2))
    cross = (ra @ rb.T) * (2.0 / (n - 2))
    return (trace + totals - cross) / (n * (n - 3))


def hsic1_self(xs: Sequence[np.ndarray]) -> np.ndarray:
    """``HSIC_1(K_a, K_a)`` for each layer of ``xs`` on one minibatch."""
    return np.diag(hsic1_matrix(xs, xs)).copy()


@dataclass
class MinibatchCKA:
    """Accumulates the minibatch estimator for layers ``a`` (of one model) x layers ``b``
    (of the same or another model); :meth:`value` is the ``[A, B]`` CKA matrix."""

    n_a: int
    n_b: int
    xy: np.ndarray = field(init=False)
    xx: np.ndarray = field(init=False)
    yy: np.ndarray = field(init=False)
    batches: int = 0
    images: int = 0

    def __post_init__(self) -> None:
        self.xy = np.zeros((self.n_a, self.n_b))
        self.xx = np.zeros(self.n_a)
        self.yy = np.zeros(self.n_b)

    def update(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> None:
        """Add one minibatch: ``xs[a]`` / ``ys[b]`` are ``[n, d]`` activations of the same
        ``n`` images (``n >= MIN_BATCH``)."""
        if len(xs) != self.n_a or len(ys) != self.n_b:
            raise ValueError(f"expected {self.n_a} x {self.n_b} layers, got {len(xs)} x {len(ys)}")
        same = ys is xs
        m = hsic1_matrix(xs, xs if same else ys)
        self.xy += m
        self.xx += np.diag(m) if same else hsic1_self(xs)
        self.yy += np.diag(m) if same else hsic1_self(ys)
        self.batches += 1
        self.images += len(xs[0])

    def value(self) -> np.ndarray:
        """The CKA matrix ``[A, B]`` over every minibatch added so far."""
        if not self.batches:
            raise ValueError("no minibatch was added")
        denom = np.sqrt(np.outer(np.clip(self.xx, 0, None), np.clip(self.yy, 0, None)))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, self.xy / denom, np.nan)


@dataclass
class FullBatchCKA:
    """The biased full-batch linear CKA (Kornblith et al. 2019) of layers ``a`` x ``b``, fed
    minibatch by minibatch like :class:`MinibatchCKA`: it keeps every image's pooled
    activations (``n x d`` per layer) and computes the matrix at the end."""

    n_a: int
    n_b: int
    xs: list[list[np.ndarray]] = field(init=False)
    ys: list[list[np.ndarray]] = field(init=False)
    same: bool = False
    batches: int = 0
    images: int = 0

    def __post_init__(self) -> None:
        self.xs = [[] for _ in range(self.n_a)]
        self.ys = [[] for _ in range(self.n_b)]

    def update(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> None:
        """Add one minibatch (any size): ``xs[a]`` / ``ys[b]`` of the same ``n`` images."""
        if len(xs) != self.n_a or len(ys) != self.n_b:
            raise ValueError(f"expected {self.n_a} x {self.n_b} layers, got {len(xs)} x {len(ys)}")
        self.same = ys is xs
        for store, arrays in ((self.xs, xs), *(() if self.same else ((self.ys, ys),))):
            for k, a in enumerate(arrays):
                store[k].append(np.asarray(a, dtype=np.float64))
        self.batches += 1
        self.images += len(xs[0])

    def value(self) -> np.ndarray:
        """The CKA matrix ``[A, B]`` of every image added:
        ``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)`` of each pair on column-centred activations."""
        if not self.batches:
            raise ValueError("no minibatch was added")
        ga = [_centred_gram(np.concatenate(x)) for x in self.xs]
        gb = ga if self.same else [_centred_gram(np.concatenate(y)) for y in self.ys]
        return _gram_cka(np.stack(ga), np.stack(gb))


def _centred_gram(x: np.ndarray) -> np.ndarray:
    """The linear Gram matrix of column-centred ``x`` [n, d], flattened (``n*n``)."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    return (xc @ xc.T).reshape(-1)


def _gram_cka(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
    """``<K_a, L_b>_F / (‖K_a‖_F ‖L_b‖_F)`` for flattened centred Grams [A, n*n], [B, n*n]:
    equal to ``‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)``."""
    num = ga @ gb.T
    denom = np.outer(np.linalg.norm(ga, axis=1), np.linalg.norm(gb, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / denom, np.nan)


#: ``--cka-estimator`` name -> (accumulator class, the name stored with a run and shown).
CKA_ESTIMATORS: dict[str, tuple[type, str]] = {
    "minibatch": (MinibatchCKA, "linear CKA, minibatch unbiased HSIC (Nguyen et al. 2021)"),
    "full": (FullBatchCKA, "linear CKA, full-batch biased HSIC (Kornblith et al. 2019)"),
}


def diagonal_profile(matrix: np.ndarray, points: int | None = None) -> np.ndarray:
    """CKA between corresponding relative depths of two models: at ``points`` depths evenly
    spaced in [0, 1] (default: the shorter model's layer count), the entry of the nearest
    layer of each. Returns ``[points, 2]``: relative depth, CKA (a model with itself: 1s)."""
    a, b = matrix.shape
    k = points or min(a, b)
    depth = np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)
    rows = np.rint(depth * (a - 1)).astype(int)
    cols = np.rint(depth * (b - 1)).astype(int)
    return np.stack([depth, matrix[rows, cols]], axis=1)
