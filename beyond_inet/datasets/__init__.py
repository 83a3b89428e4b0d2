"""Datasets: one module per dataset family, registered here explicitly.

Each :class:`~beyond_inet.datasets.base.DatasetSpec` says where the dataset lives (its
:class:`~beyond_inet.datasets.base.Layout` under ``--data-root``), how to get it, and how it
is scored (its :class:`~beyond_inet.datasets.base.Protocol`). Adding a dataset: a module
with its finder and spec, one line below, and a test (see CONTRIBUTING.md).
"""

from __future__ import annotations

from beyond_inet.datasets.base import (
    INPUT_RECIPES,
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
from beyond_inet.datasets.pug import PUG_IMAGENET
from beyond_inet.registry import Registry

__all__ = [
    "DATASETS",
    "INPUT_RECIPES",
    "DatasetLayoutError",
    "DatasetSpec",
    "DecisionRule",
    "FoundDataset",
    "Layout",
    "Protocol",
    "Sample",
    "dataset_preprocessing",
    "discover",
    "locate",
    "relative_id",
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
):
    DATASETS.add(_spec.name, _spec)
