"""Datasets: one module per dataset family, registered here explicitly.

Each :class:`~beyond_inet.datasets.base.DatasetSpec` says where the dataset lives (its
:class:`~beyond_inet.datasets.base.Layout` under ``--data-root``), how to get it, and how it
is scored (its :class:`~beyond_inet.datasets.base.Protocol`). Adding a dataset: a module
with its finder and spec, one line below, and a test (see CONTRIBUTING.md).
"""

from __future__ import annotations

from beyond_inet.datasets.base import (
    CROSS_EVALUATIONS,
    INPUT_RECIPES,
    CrossEvaluation,
    DatasetLayoutError,
    DatasetSpec,
    DecisionRule,
    FoundDataset,
    Layout,
    Protocol,
    Sample,
    dataset_preprocessing,
    discover,
    locate,
    relative_id,
)
from beyond_inet.datasets.cue_conflict import CUE_CONFLICT
from beyond_inet.datasets.imagenet import IMAGENET_VAL
from beyond_inet.datasets.imagenet_c import IMAGENET_C
from beyond_inet.datasets.imagenet_hard import IMAGENET_HARD
from beyond_inet.datasets.imagenet_variants import (
    IMAGENET_A,
    IMAGENET_R,
    IMAGENET_SKETCH,
    IMAGENET_V2,
)
from beyond_inet.datasets.ood import OOD_REPORT, OOD_SETS, OodSet
from beyond_inet.datasets.pug import PUG_IMAGENET
from beyond_inet.registry import Registry

__all__ = [
    "CROSS_EVALUATIONS",
    "DATASETS",
    "INPUT_RECIPES",
    "OOD_REPORT",
    "CrossEvaluation",
    "DatasetLayoutError",
    "DatasetSpec",
    "DecisionRule",
    "FoundDataset",
    "Layout",
    "OodSet",
    "Protocol",
    "Sample",
    "dataset_preprocessing",
    "discover",
    "locate",
    "reference_dataset",
    "relative_id",
    "role_datasets",
]

DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    IMAGENET_VAL,
    CUE_CONFLICT,
    IMAGENET_V2,
    IMAGENET_SKETCH,
    IMAGENET_R,
    IMAGENET_A,
    IMAGENET_C,
    IMAGENET_HARD,
    PUG_IMAGENET,
    *OOD_SETS,
):
    DATASETS.add(_spec.name, _spec)


def role_datasets(evaluation: str, role: str) -> list[str]:
    """The datasets that play ``role`` in the cross-dataset ``evaluation``, in order."""
    return [name for name, spec in DATASETS.items() if spec.protocol.role(evaluation) == role]


def reference_dataset(evaluation: str) -> str:
    """The one dataset in the reference role of ``evaluation`` (fitted on / in-distribution)."""
    (name,) = role_datasets(evaluation, CROSS_EVALUATIONS.get(evaluation).reference)
    return name
