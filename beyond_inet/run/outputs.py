"""The engine's per-image outputs of a pass -> stored per-image records: sample ids,
labels, correctness by the dataset's rule, decisions by name, factor values, and the stored
views (sample groups x transform views)."""

from __future__ import annotations

import numpy as np

from beyond_inet.datasets import FoundDataset
from beyond_inet.records import ImageRecords, record_from
from beyond_inet.run.engine import (
    LogitOutputs,
)


def _correct(
    found: FoundDataset, out: LogitOutputs, labels: np.ndarray, decision: np.ndarray | None
) -> np.ndarray:
    rule = found.spec.protocol.decision
    if rule is not None and decision is not None:
        targets = np.array([rule.target(found.samples[i].sample_id) for i in out.index])
        return decision == targets
    correct = (out.pred == labels) & (labels >= 0)
    alt = [found.samples[i].alt_labels for i in out.index]
    if any(alt):  # multi-label datasets: any acceptable label counts
        correct = correct | np.array([p in a for p, a in zip(out.pred, alt, strict=True)])
    return correct


def image_records(
    found: FoundDataset, out: LogitOutputs, decision_labels: tuple[str, ...] | None
) -> ImageRecords:
    """The engine's logits-derived outputs -> per-image records (sample ids, labels,
    correctness by the dataset's rule, decisions as names, factor values)."""
    ids = np.array([found.samples[i].sample_id for i in out.index], dtype=object)
    labels = np.array([found.samples[i].label for i in out.index], dtype=np.int64)
    decision = None
    if out.decision is not None and decision_labels is not None:
        decision = np.asarray(decision_labels, dtype=object)[out.decision]
    factors = [found.samples[i].factor_value for i in out.index]
    factor_value = np.array(factors, dtype=object) if any(f is not None for f in factors) else None
    own = {
        "sample_id": ids,
        "label": labels,
        "correct": _correct(found, out, labels, decision),
        "decision": decision,
        "factor_value": factor_value,
    }
    return record_from(ImageRecords, own, out)


def stored_view(group: str, transform_view: str) -> str:
    """The stored view of a sample group seen through a transform view."""
    if transform_view == "standard":
        return group
    return transform_view if group == "standard" else f"{group}|{transform_view}"


def split_views(
    found: FoundDataset, outputs: dict[str, LogitOutputs], decision_labels: tuple[str, ...] | None
) -> dict[str, ImageRecords]:
    """Transform-view outputs -> stored views (sample groups x transform views)."""
    groups = np.array([s.group for s in found.samples], dtype=object)
    out: dict[str, ImageRecords] = {}
    for tview, arrays in outputs.items():
        rec = image_records(found, arrays, decision_labels)
        g = groups[arrays.index] if len(arrays.index) else np.array([], dtype=object)
        for group in list(dict.fromkeys(g)) or ["standard"]:
            out[stored_view(str(group), tview)] = rec.take(g == group) if len(g) else rec
    return out
