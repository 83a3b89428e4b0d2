"""Temperature scaling (Guo et al., ICML 2017): one scalar ``T`` per model divides the
logits, ``softmax(z / T)``, fitted to minimise the negative log-likelihood on held-out
labelled images. It changes confidences, never the ranking (top-1 / top-5 stay the same), so
calibration after scaling separates "overconfident" from "badly ranked".

The protocol (fixed and documented in the README):

* ImageNet val is cut into two folds by the first byte of ``SHA-256(sample_id)`` (parity),
  independent of ``--limit``, sharding and file order.
* Cross-fitting: each fold's images are scored with the temperature fitted on the *other*
  fold, so no ImageNet val image is scored by a temperature fitted on it.
* The temperature fitted on all of ImageNet val is the one applied to every labelled shift
  dataset (ImageNet-V2 / -A / -R / -Sketch / -C / -Hard, PUG-ImageNet).

Pure functions on arrays; the engine and the pipeline call them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from beyond_inet.records import MetricRow

#: Search interval of the temperature (the optimum of real models lies well inside).
T_BOUNDS = (0.05, 20.0)
N_FOLDS = 2
PROTOCOL = "cross-fit: 2 folds of ImageNet val by SHA-256(sample_id) parity"


def folds(sample_ids: Sequence[str]) -> np.ndarray:
    """The fold (0 or 1) of each image: parity of the first byte of SHA-256 of its id."""
    return np.array(
        [hashlib.sha256(str(s).encode()).digest()[0] & 1 for s in sample_ids], dtype=np.int64
    )


def _nll(logits: np.ndarray, labels: np.ndarray, device: str = "cpu") -> Callable[[float], float]:
    """``T -> mean NLL of softmax(logits / T) at labels`` in float64 (torch's logsumexp on
    ``device``: a full ImageNet val's 50M logits take ~0.1 s per evaluation on 2 CPU cores,
    far less on a GPU)."""
    import torch

    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64).to(device)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(device)
    z_true = z[torch.arange(len(y)), y]

    def nll(temperature: float) -> float:
        return float((torch.logsumexp(z / temperature, dim=1) - z_true / temperature).mean())

    return nll


def mean_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` at ``labels``."""
    return _nll(logits, labels)(temperature)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, device: str = "cpu") -> float:
    """The temperature in :data:`T_BOUNDS` minimising :func:`mean_nll` (bounded Brent search
    on ``log T``, the NLL on ``device``); images with a negative label are ignored. NaN with
    no labelled image (see :func:`fit_with_identification`)."""
    return fit_with_identification(logits, labels, device)[0]


def fit_with_identification(
    logits: np.ndarray, labels: np.ndarray, device: str = "cpu"
) -> tuple[float, bool]:
    """(:func:`fit_temperature`, whether it is identified): False unless the NLL at the
    optimum is strictly below its value at both edges of :data:`T_BOUNDS` — perfectly
    separated images make it fall to 0 towards T = 0 (in float64 it is exactly 0 there), and
    constant logits make it flat — where the value is an artefact of the search."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return math.nan, False
    nll = _nll(np.asarray(logits)[keep], labels[keep], device)
    lo, hi = (math.log(b) for b in T_BOUNDS)
    res = minimize_scalar(
        lambda s: nll(math.exp(s)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6}
    )
    t = float(math.exp(res.x))
    best, edges = nll(t), (nll(T_BOUNDS[0]), nll(T_BOUNDS[1]))
    interior = all(e - best > 1e-12 * max(1.0, abs(best)) for e in edges)  # a real minimum
    return t, identified(t) and interior


@dataclass(frozen=True)
class CrossFit:
    """The temperatures of a cross-fit: ``temperature`` fitted on every labelled image (the
    one shift datasets get), ``fold_temperatures`` on each fold, and ``per_image``: the
    temperature each image is scored with (the other fold's)."""

    temperature: float
    fold_temperatures: tuple[float, ...]
    per_image: np.ndarray
    #: whether every fit is identified (:func:`fit_with_identification`)
    all_identified: bool = True

    @property
    def complete(self) -> bool:
        """Whether every fold had labelled images (otherwise nothing can be scored)."""
        return all(math.isfinite(t) for t in (self.temperature, *self.fold_temperatures))

    @property
    def identified(self) -> bool:
        """Whether every fit found a real optimum (:func:`fit_with_identification`)."""
        return self.all_identified and self.complete


def identified(temperature: float, rel: float = 1e-3) -> bool:
    """``temperature`` is finite and not at an edge of :data:`T_BOUNDS` (within ``rel``)."""
    lo, hi = T_BOUNDS
    return (
        math.isfinite(temperature) and temperature > lo * (1 + rel) and temperature < hi * (1 - rel)
    )


def cross_fit(
    logits: np.ndarray, labels: np.ndarray, fold: np.ndarray, device: str = "cpu"
) -> CrossFit:
    """Fit on each fold and on all (the NLL evaluated on ``device``); each image gets the
    temperature of the other fold."""
    labels, fold = np.asarray(labels), np.asarray(fold)
    fits = [
        fit_with_identification(logits[fold == k], labels[fold == k], device)
        for k in range(N_FOLDS)
    ]
    overall = fit_with_identification(logits, labels, device)
    per_fold = tuple(t for t, _ in fits)
    other = np.asarray(per_fold)[(fold + 1) % N_FOLDS]
    ok = overall[1] and all(i for _, i in fits)
    return CrossFit(overall[0], per_fold, other, ok)


def temperature_rows(
    temperature: float, fold_temperatures: Sequence[float] = ()
) -> list[MetricRow]:
    """The metric rows recording a run's temperature (and the cross-fit's fold ones)."""
    rows = [MetricRow("temperature", float(temperature))]
    rows += [MetricRow(f"temperature_fold:{k}", float(t)) for k, t in enumerate(fold_temperatures)]
    return rows
