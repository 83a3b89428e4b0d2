"""Cue-conflict (Geirhos et al.) stimuli: the 16 categories and the 1000 -> 16 decision mapping.

The mapping follows bethgelab/model-vs-human ``ImageNetProbabilitiesTo16ClassesMapping`` with
its default aggregation ``np.mean``: a category's score is the MEAN of the softmax probabilities
of its ImageNet classes (``HumanCategories.<category>_indices``, shipped here as a CSV), and the
decision is the category with the highest score.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

CATEGORIES: tuple[str, ...] = (
    "airplane",
    "bear",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "car",
    "cat",
    "chair",
    "clock",
    "dog",
    "elephant",
    "keyboard",
    "knife",
    "oven",
    "truck",
)
"""The 16 cue-conflict categories, alphabetical (model-vs-human order)."""

NUM_IMAGENET_CLASSES = 1000
_INDICES_CSV = "cue_conflict_16class_imagenet_indices.csv"
_STIMULUS_RE = re.compile(
    r"^(?:.*_)?(?P<shape>[a-z]+)\d+-(?P<texture>[a-z]+)\d+\.(?:png|jpe?g)$", re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def _category_index_items() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Parse and validate the shipped CSV once; items in CATEGORIES order."""
    text = resources.files("beyond_inet.resources").joinpath(_INDICES_CSV).read_text("utf-8")
    grouped: dict[str, list[int]] = {c: [] for c in CATEGORIES}
    for row in csv.DictReader(io.StringIO(text)):
        category, index = row["category"], int(row["imagenet_index"])
        if category not in grouped or not 0 <= index < NUM_IMAGENET_CLASSES:
            raise ValueError(f"bad row in {_INDICES_CSV}: {row}")
        grouped[category].append(index)
    all_indices = [i for indices in grouped.values() for i in indices]
    if len(set(all_indices)) != len(all_indices) or not all(grouped.values()):
        raise ValueError(f"{_INDICES_CSV}: duplicated index or category without index")
    return tuple((c, tuple(sorted(grouped[c]))) for c in CATEGORIES)


def category_imagenet_indices() -> dict[str, tuple[int, ...]]:
    """Category -> sorted ImageNet-1k class indices (a fresh dict; the parse is cached)."""
    return dict(_category_index_items())


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
    for column, (_, indices) in enumerate(_category_index_items()):
        matrix[list(indices), column] = 1.0 / len(indices)
    matrix.setflags(write=False)
    return matrix


def _check_probs_shape(shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``shape`` is [N, 1000]."""
    if len(shape) != 2 or shape[1] != NUM_IMAGENET_CLASSES:
        raise ValueError(f"expected ImageNet probabilities of shape [N, 1000], got {shape}")


def category_probabilities(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N, 1000] softmax probabilities -> float64 [N, 16] per-category mean probabilities."""
    if not isinstance(probs, np.ndarray) and hasattr(probs, "detach"):  # a torch tensor
        import torch

        probs = probs.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(probs, dtype=np.float64)
    _check_probs_shape(array.shape)
    return array @ _averaging_matrix()


def decision_from_probs(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N, 1000] softmax probabilities -> int64 [N] index into CATEGORIES (argmax of the means).

    Ties go to the first category in CATEGORIES (``np.argmax``); model-vs-human sorts with
    ``np.argsort`` instead, which only matters for exactly equal category means.
    """
    return np.argmax(category_probabilities(probs), axis=1).astype(np.int64)


@functools.lru_cache(maxsize=16)
def _torch_averaging_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The [1000, 16] averaging matrix on ``device`` in ``dtype`` (cached per pair)."""
    import torch

    return torch.from_numpy(_averaging_matrix().copy()).to(device=device, dtype=dtype)


def decision_from_probs_torch(probs: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`decision_from_probs`: [N, 1000] -> int64 [N] on ``probs.device``.

    The mean is computed in ``probs.dtype`` (floating point required) on its device.
    """
    _check_probs_shape(tuple(probs.shape))
    if not probs.is_floating_point():
        raise ValueError(f"expected floating point probabilities, got {probs.dtype}")
    matrix = _torch_averaging_matrix(probs.device, probs.dtype)
    return (probs @ matrix).argmax(dim=1)
