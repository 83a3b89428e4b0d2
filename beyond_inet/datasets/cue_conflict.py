"""Cue-conflict (Geirhos et al.) stimuli, their names and the 1000 -> 16 decision mapping.

The mapping follows bethgelab/model-vs-human ``ImageNetProbabilitiesTo16ClassesMapping`` with
its default aggregation ``np.mean``: a category's score is the MEAN of the softmax probabilities
of its ImageNet classes (``HumanCategories.<category>_indices``, shipped as a CSV), and the
decision is the category with the highest score. The stimuli are fed at native size
(``input_recipe='native'``) as model-vs-human does.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from beyond_inet.datasets.base import (
    DatasetSpec,
    DecisionRule,
    Layout,
    Protocol,
    Sample,
    is_image,
    relative_id,
)
from beyond_inet.reference import (
    CUE_CONFLICT_CATEGORIES,
    NUM_IMAGENET_CLASSES,
    cue_conflict_category_items,
)

if TYPE_CHECKING:
    import torch

CATEGORIES = CUE_CONFLICT_CATEGORIES
_STIMULUS_RE = re.compile(
    r"^(?:.*_)?(?P<shape>[a-z]+)\d+-(?P<texture>[a-z]+)\d+\.(?:png|jpe?g)$", re.IGNORECASE
)


def category_imagenet_indices() -> dict[str, tuple[int, ...]]:
    """Category -> sorted ImageNet-1k class indices (a fresh dict; the parse is cached)."""
    return dict(cue_conflict_category_items())


def parse_stimulus_name(name: str) -> tuple[str, str]:
    """``.../cat1-airplane1.png`` -> ``("cat", "airplane")`` i.e. (shape, texture).

    An optional ``<prefix>_`` before the stem is tolerated (model-vs-human style). Raises
    ValueError when the base name is not ``<shape><i>-<texture><j>.<png|jpg|jpeg>`` or a
    category is not one of CATEGORIES.
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    match = _STIMULUS_RE.match(base)
    if match is None:
        raise ValueError(
            f"not a cue-conflict stimulus name '<shape><i>-<texture><j>.png': {name!r}"
        )
    shape, texture = match["shape"].lower(), match["texture"].lower()
    unknown = [c for c in (shape, texture) if c not in CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown cue-conflict categor{'ies' if len(unknown) > 1 else 'y'} "
            f"{unknown} in {name!r}; expected one of {CATEGORIES}"
        )
    return shape, texture


@functools.lru_cache(maxsize=1)
def _averaging_matrix() -> np.ndarray:
    """Read-only float64 [1000, 16]: column c averages the probabilities of category c."""
    matrix = np.zeros((NUM_IMAGENET_CLASSES, len(CATEGORIES)), dtype=np.float64)
    for column, (_, indices) in enumerate(cue_conflict_category_items()):
        matrix[list(indices), column] = 1.0 / len(indices)
    matrix.setflags(write=False)
    return matrix


def _check_probs_shape(shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``shape`` is [N, 1000]."""
    if len(shape) != 2 or shape[1] != NUM_IMAGENET_CLASSES:
        raise ValueError(f"expected ImageNet probabilities of shape [N, 1000], got {shape}")


@functools.lru_cache(maxsize=16)
def _torch_averaging_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The [1000, 16] averaging matrix on ``device`` in ``dtype`` (cached per pair)."""
    import torch

    return torch.from_numpy(_averaging_matrix().copy()).to(device=device, dtype=dtype)


def decision_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """[N, 1000] softmax probabilities -> int64 [N] index into CATEGORIES: the argmax of each
    category's mean probability (model-vs-human's 16-class mapping), on ``probs.device``.

    The mean is computed in ``probs.dtype`` (floating point required) on its device. Ties go
    to the first category (``argmax``); model-vs-human sorts with ``np.argsort`` instead,
    which only matters for exactly equal category means.
    """
    _check_probs_shape(tuple(probs.shape))
    if not probs.is_floating_point():
        raise ValueError(f"expected floating point probabilities, got {probs.dtype}")
    matrix = _torch_averaging_matrix(probs.device, probs.dtype)
    return (probs @ matrix).argmax(dim=1)


def shape_of(sample_id: str) -> str:
    """The shape category of a stimulus (its correct decision)."""
    return parse_stimulus_name(sample_id)[0]


def find_cue_conflict(root: Path) -> list[Sample]:
    """Cue-conflict stimuli: ``<shape>/<shape><i>-<texture><j>.png`` (label: none)."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name in CATEGORIES):
        for f in sorted(d.iterdir()):
            if is_image(f):
                parse_stimulus_name(f.name)  # raises on names that are not stimuli
                out.append(Sample(f, relative_id(f, root), -1))
    return out


#: The 16-category decision of model-vs-human; correct = the stimulus's shape.
CUE_CONFLICT_16 = DecisionRule(tuple(CATEGORIES), decision_from_probs, shape_of)

CUE_CONFLICT = DatasetSpec(
    name="cue-conflict",
    description="Cue-conflict stimuli (1,280 images, 16 categories)",
    layout=Layout(
        "cue-conflict",
        "cue-conflict/<shape>/<shape><i>-<texture><j>.png (16 category folders)",
        find_cue_conflict,
    ),
    how_to_get="`python -m precompute --download cue-conflict --data-root DIR` "
    "(model-vs-human's release), or the texture-vs-shape stimuli of Geirhos et al. "
    "(CC-BY-4.0), github.com/rgeirhos/texture-vs-shape, "
    "stimuli/style-transfer-preprocessed-512.",
    protocol=Protocol(evaluations=("shape_bias",), decision=CUE_CONFLICT_16, input_recipe="native"),
)
