"""k-nearest-neighbour classification on frozen features: pure functions on arrays.

Features are L2-normalised, so the Euclidean neighbours are the cosine-similarity
neighbours. Each query's ``k`` nearest training images vote with equal weight; the vote
shares are its class probabilities (scikit-learn's ``KNeighborsClassifier(k)``'s
``predict_proba``), the prediction the class with most votes (the lowest class index on a
tie, as scikit-learn's ``predict``). ``k`` is chosen on val (highest val top-1; ties go to
the smaller ``k``) from :data:`K_GRID`, then test images vote among train + val, as the
linear probe is refit on train + val.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beyond_inet.scoring.probe import l2_normalise

#: The k values tried on val (those above the training set's size are left out).
K_GRID: tuple[int, ...] = (1, 3, 5, 7, 10, 15, 20, 30, 50)
#: Query rows per similarity block (bounds memory: block x training images floats).
_BLOCK = 1024


def neighbours(train_x: np.ndarray, query_x: np.ndarray, k: int) -> np.ndarray:
    """int [n_query, k]: the training rows nearest each query (L2-normalised features:
    highest cosine similarity first; equal similarities: the lower training index)."""
    xt, xq = l2_normalise(train_x), l2_normalise(query_x)
    k = min(k, len(xt))
    out = np.empty((len(xq), k), dtype=np.int64)
    for start in range(0, len(xq), _BLOCK):
        sim = xq[start : start + _BLOCK] @ xt.T
        out[start : start + _BLOCK] = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return out


def vote_shares(
    train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, k: int, n_classes: int
) -> np.ndarray:
    """float [n_query, n_classes]: the share of each class among a query's ``k`` nearest
    training images (equal weights)."""
    near = np.asarray(train_y)[neighbours(train_x, query_x, k)]
    votes = np.zeros((len(near), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(near)), near.shape[1]), near.ravel()), 1.0)
    return votes / max(near.shape[1], 1)


def vote_logits(shares: np.ndarray, k: int) -> np.ndarray:
    """Log-probabilities for scoring and temperature scaling: the vote shares with one
    pseudo-vote spread evenly over the classes, ``(k * share + 1 / C) / (k + 1)`` (so no
    class has probability 0 and the NLL stays finite; the ranking of classes is the
    votes')."""
    n = shares.shape[1]
    return np.log((k * shares + 1.0 / n) / (k + 1.0))


def choose_k(val_top1: dict[int, float]) -> int:
    """The k with the highest val top-1, the smallest such on ties."""
    top = max(val_top1.values())
    return min(k for k, s in val_top1.items() if s == top)


@dataclass
class KnnResult:
    """The chosen ``k``, val top-1 per k tried, the test vote shares (neighbours among
    train + val) and the val vote shares (neighbours among train, at ``k``)."""

    k: int
    val_top1: dict[int, float]
    probs: np.ndarray
    val_probs: np.ndarray
    seconds: float


def fit_knn(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    n_classes: int,
    grid: Sequence[int] = K_GRID,
) -> KnnResult:
    """Choose ``k`` on ``val`` (train neighbours), then vote test among train + val."""
    start = time.perf_counter()
    (xt, yt), (xv, yv) = train, val
    ks = sorted({k for k in grid if k <= len(xt)}) or [len(xt)]
    scores: dict[int, float] = {}
    if len(xv):
        near = np.asarray(yt)[neighbours(xt, xv, max(ks))]
        for k in ks:  # the k nearest are a prefix of the max(ks) nearest
            votes = np.zeros((len(near), n_classes))
            np.add.at(votes, (np.repeat(np.arange(len(near)), k), near[:, :k].ravel()), 1.0)
            scores[k] = float(np.mean(votes.argmax(1) == yv))
    best = choose_k(scores) if scores else ks[len(ks) // 2]
    val_probs = vote_shares(xt, yt, xv, best, n_classes) if len(xv) else np.zeros((0, n_classes))
    xa = np.concatenate([xt, xv]) if len(xv) else xt
    ya = np.concatenate([yt, yv]) if len(xv) else yt
    probs = vote_shares(xa, ya, test_x, best, n_classes)
    return KnnResult(best, scores, probs, val_probs, time.perf_counter() - start)
