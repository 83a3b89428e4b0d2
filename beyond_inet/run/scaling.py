"""Temperature scaling of a run's outputs, by the dataset's role in the ``temperature``
cross-dataset evaluation: cross-fitted where the dataset fits it (ImageNet val), the applied
temperature recorded where it applies one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from beyond_inet.datasets import FoundDataset
from beyond_inet.log import Log
from beyond_inet.records import (
    MetricRow,
)
from beyond_inet.run.engine import (
    SCALED,
    ClassSubset,
    Features,
    LogitOutputs,
    PassResult,
    score_logits,
)
from beyond_inet.scoring import temperature as ts


@dataclass(frozen=True)
class Scaling:
    """How a run's outputs were temperature-scaled: the temperature (and a cross-fit's fold
    ones) and the record for the run's settings."""

    temperature: float
    fold_temperatures: tuple[float, ...]
    settings: dict[str, Any]

    def rows(self, views: Iterable[str]) -> list[tuple[str, MetricRow]]:
        """The temperature metric rows of each stored view that was scaled."""
        rows = ts.temperature_rows(self.temperature, self.fold_temperatures)
        return [(v, r) for v in views for r in rows]


def cross_fit_outputs(
    found: FoundDataset, out: LogitOutputs, logits: Features, device: str = "cpu"
) -> tuple[LogitOutputs, ts.CrossFit]:
    """``out`` with the ``*_ts`` outputs of a cross-fit on the pass's full ``logits`` (each
    image scored by :func:`~beyond_inet.run.engine.score_logits` at the other fold's
    temperature), and the fit."""
    order = np.argsort(logits.index, kind="stable")
    rows = order[np.searchsorted(logits.index[order], out.index)]
    z = np.asarray(logits.values[rows], dtype=np.float32)
    labels = np.array([found.samples[i].label for i in out.index], dtype=np.int64)
    ids = [found.samples[i].sample_id for i in out.index]
    fit = ts.cross_fit(z, labels, ts.folds(ids), device)
    if not fit.complete or not len(z):
        return out, fit
    subset_of = found.spec.protocol.class_subset
    subset = ClassSubset.of(subset_of(), device) if subset_of else None
    scaled = score_logits(
        torch.from_numpy(z / fit.per_image[:, None].astype(np.float32)).to(device),
        torch.from_numpy(labels).to(device),
        None,
        subset,
    )
    return replace(out, **{f"{k}_ts": scaled[k] for k in SCALED}), fit


def scale_outputs(
    found: FoundDataset,
    model: str,
    outputs: dict[str, LogitOutputs],
    result: PassResult,
    applied: tuple[float, str] | None,
    log: Log,
    device: str = "cpu",
) -> tuple[dict[str, LogitOutputs], Scaling | None]:
    """Temperature scaling of one model's outputs (transform view -> outputs) by the
    dataset's protocol: cross-fitted on the fit dataset (from the pass's logits); the
    engine already scored an applying dataset at ``applied``."""
    use = found.spec.protocol.role("temperature")
    if use == "apply" and applied is not None:
        return outputs, Scaling(
            applied[0],
            (),
            {"temperature": applied[0], "fitted_by_run": applied[1], "protocol": ts.PROTOCOL},
        )
    logits = result.logits.get((model, "standard"))
    if use != "fit" or logits is None or "standard" not in outputs:
        return outputs, None
    scaled, fit = cross_fit_outputs(found, outputs["standard"], logits, device)
    if not fit.complete:
        log(
            f"note: {model} on {found.spec.name}: a cross-fit fold has no labelled image; "
            "no temperature is fitted (evaluate more images)."
        )
        return outputs, None
    if not fit.identified:
        log(
            f"note: {model} on {found.spec.name}: the temperature is not identified (the NLL "
            f"keeps falling to the edge of {ts.T_BOUNDS}: the labelled images are all "
            "separated, or all tied); none is stored."
        )
        return outputs, None
    settings = {
        "temperature": fit.temperature,
        "fold_temperatures": list(fit.fold_temperatures),
        "protocol": ts.PROTOCOL,
    }
    return {**outputs, "standard": scaled}, Scaling(
        fit.temperature, fit.fold_temperatures, settings
    )
