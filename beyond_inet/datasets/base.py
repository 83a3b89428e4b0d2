"""What a dataset is: where it lives (:class:`Layout`), how to get it (``how_to_get``) and
how it is scored (:class:`Protocol`), with sample discovery shared by every dataset module."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beyond_inet.reference import imagenet_wnid_index
from beyond_inet.registry import Registry
from beyond_inet.transforms.preprocess import Preprocessing

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
WNID = re.compile(r"^n\d{8}$")


class DatasetLayoutError(ValueError):
    """A dataset folder exists but does not have the expected layout."""


@dataclass(frozen=True)
class Sample:
    """One image: absolute path, id relative to the dataset root, label (-1 = none).

    ``group`` names the subset the image belongs to when a dataset is split into views by
    its folders (ImageNet-C ``<corruption>:<severity>``, PUG factors); ``standard`` otherwise.
    ``alt_labels`` holds every acceptable label for multi-label datasets (empty otherwise).
    ``factor_value`` is a per-image factor level (PUG-ImageNet pose / light / ..., ImageNet-Hard
    origin) for accuracy per value (``top1_at:<value>``); ``None`` otherwise.
    """

    path: Path
    sample_id: str
    label: int = -1
    group: str = "standard"
    alt_labels: tuple[int, ...] = ()
    factor_value: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where a dataset lives: its conventional folder under ``--data-root``, the layout in
    words (for messages and ``--list-datasets``), and the function that lists its samples
    (``[]`` for a folder without usable images)."""

    subdir: str
    text: str
    find: Callable[[Path], list[Sample]] = field(compare=False)


@dataclass(frozen=True)
class DecisionRule:
    """A dataset's own decision (cue-conflict's 16 categories): ``decide`` maps ``[B, 1000]``
    probabilities (torch) to indices into ``labels``; ``target`` gives a sample's correct
    label (by sample id)."""

    labels: tuple[str, ...]
    decide: Callable[[torch.Tensor], torch.Tensor] = field(compare=False)
    target: Callable[[str], str] = field(compare=False)


@dataclass(frozen=True)
class CrossEvaluation:
    """An evaluation that spans datasets: one dataset plays the ``reference`` role (fitted
    on, or the in-distribution set) and the datasets in the ``target`` role are scored with
    what the reference run of the same model (weights, preprocessing, precision) gives."""

    name: str
    reference: str
    target: str
    description: str


#: The cross-dataset evaluations (data); a dataset declares its roles in its protocol.
CROSS_EVALUATIONS: Registry[CrossEvaluation] = Registry("cross-dataset evaluation")
CROSS_EVALUATIONS.add(
    "temperature",
    CrossEvaluation(
        "temperature",
        "fit",
        "apply",
        "temperature scaling: cross-fitted on ImageNet val, applied to the labelled shifts",
    ),
)
CROSS_EVALUATIONS.add(
    "ood",
    CrossEvaluation(
        "ood",
        "in-distribution",
        "out-of-distribution",
        "OOD detection: each OOD set's images against ImageNet val's, by MSP, max-logit and "
        "energy scores",
    ),
)


#: The roles of a labelled ImageNet shift: scored also at ImageNet val's temperature.
APPLY_TEMPERATURE: tuple[tuple[str, str], ...] = (("temperature", "apply"),)


@dataclass(frozen=True)
class Protocol:
    """How a dataset is scored.

    * ``evaluations``: per-view evaluations (names in the evaluation registry);
    * ``view_evaluations``: those for the transform views other than ``standard`` (scale /
      shift / resolution; ``None`` = the same), keeping the heavy ones to ``standard``;
    * ``run_evaluations``: evaluations that need every view at once (agreement, mCE);
    * ``transform_views``: whether the invariance grids apply;
    * ``class_subset``: the ImageNet-1k classes its classes map to (read lazily), to which
      softmax and predictions are restricted (ImageNet-R / -A);
    * ``decision``: its own decision rule, if any;
    * ``input_recipe``: its own input recipe (a name in :data:`INPUT_RECIPES`; cue-conflict
      is fed at native size), ``None`` = each model's own preprocessing;
    * ``roles``: its part in cross-dataset evaluations, ``(evaluation, role)`` pairs (see
      :data:`CROSS_EVALUATIONS`): ``("temperature", "fit")`` (ImageNet val: the temperature
      is cross-fitted on it), ``("temperature", "apply")`` (a labelled shift: scored also
      at the temperature fitted on ImageNet val), ``("ood", "out-of-distribution")``.
    """

    evaluations: tuple[str, ...] = ()
    view_evaluations: tuple[str, ...] | None = None
    run_evaluations: tuple[str, ...] = ()
    transform_views: bool = False
    class_subset: Callable[[], tuple[int, ...]] | None = field(default=None, compare=False)
    decision: DecisionRule | None = None
    input_recipe: str | None = None
    roles: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, role in self.roles:
            cross = CROSS_EVALUATIONS.get(name)  # unknown names: "did you mean"
            if role not in (cross.reference, cross.target):
                raise ValueError(
                    f"{name}: role {role!r} is neither {cross.reference!r} nor {cross.target!r}"
                )

    def role(self, evaluation: str) -> str | None:
        """This dataset's role in a cross-dataset evaluation, or ``None``."""
        return dict(self.roles).get(evaluation)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the tool knows: its name, where it lives, how to get it, how to score it."""

    name: str
    description: str
    layout: Layout
    how_to_get: str
    protocol: Protocol = Protocol()


@dataclass(frozen=True)
class FoundDataset:
    """A dataset located on disk with its listed samples. ``reader`` opens a sample whose
    image is not a file of its own (a torchvision dataset's arrays) as a PIL image; ``None``
    means every sample's ``path`` is an image file."""

    spec: DatasetSpec
    root: Path
    samples: list[Sample]
    reader: Callable[[Sample], Any] | None = field(default=None, compare=False)

    def fingerprint(self) -> str:
        """What was evaluated: a hash of the sorted (sample id, file size) pairs and their
        count, part of a run's identity (another folder or changed files is another run)."""
        h = hashlib.sha256(f"{len(self.samples)}\n".encode())
        for s in sorted(self.samples, key=lambda s: s.sample_id):
            try:
                size = os.stat(s.path).st_size
            except OSError:
                size = -1
            h.update(f"{s.sample_id}\t{size}\n".encode())
        return h.hexdigest()[:24]


def locate(spec: DatasetSpec, data_root: Path, override: Path | None = None) -> Path:
    """The folder for ``spec``: ``override`` if given, else ``data_root / <its subdir>``."""
    return override if override is not None else data_root / spec.layout.subdir


#: How ``--limit`` samples (recorded with every limited run).
LIMIT_SAMPLING = "class-balanced, seeded: round-robin over classes, SHA-256(seed, sample id) order"
LIMIT_SEED = 0


def _rank(seed: int, text: str) -> bytes:
    return hashlib.sha256(f"{seed}\t{text}".encode()).digest()


def _sample_class(s: Sample) -> tuple[str, str]:
    """The stratum of a sample for ``--limit``: its view group and its class (the label, or
    the first folder of its id for unlabelled datasets, e.g. cue-conflict's shape)."""
    cls = str(s.label) if s.label >= 0 else s.sample_id.split("/", 1)[0]
    return s.group, cls


def balanced_sample(samples: Sequence[Sample], limit: int, seed: int = LIMIT_SEED) -> list[Sample]:
    """``limit`` samples spread evenly over the classes (and view groups): each class's
    images in a seeded order (SHA-256 of seed and sample id), the classes too, then taken
    round-robin until ``limit``; kept in the dataset's order. The same files whatever order
    they were listed in; all of them when ``limit`` is not smaller."""
    if limit >= len(samples):
        return list(samples)
    by_class: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        by_class.setdefault(_sample_class(s), []).append(s)
    classes = sorted(by_class, key=lambda c: _rank(seed, "\t".join(c)))
    queues = [sorted(by_class[c], key=lambda s: _rank(seed, s.sample_id)) for c in classes]
    chosen: set[str] = set()
    for r in range(max(len(q) for q in queues)):
        for q in queues:
            if r < len(q) and len(chosen) < limit:
                chosen.add(q[r].sample_id)
    return [s for s in samples if s.sample_id in chosen]


def discover(spec: DatasetSpec, root: Path, limit: int | None = None) -> FoundDataset | None:
    """List ``spec`` under ``root``; ``None`` when the folder is absent. ``limit``: a
    class-balanced seeded sample of that many (:func:`balanced_sample`).

    Raises :class:`DatasetLayoutError` when the folder exists but holds no usable images.
    """
    if not root.exists():
        return None
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{spec.name}: {root} is not a folder. Expected {spec.layout.text}."
        )
    samples = spec.layout.find(root)
    if not samples:
        raise DatasetLayoutError(
            f"{spec.name}: no images found in {root}. Expected layout: {spec.layout.text}."
        )
    return FoundDataset(spec, root, balanced_sample(samples, limit) if limit else samples)


# --------------------------------------------------------------------------- input recipes


def native_input(pp: Preprocessing) -> Preprocessing:
    """The cue-conflict protocol (model-vs-human): the 224 px stimuli are fed as they are,
    ``ToTensor`` + ``Normalize`` with the model's mean / std; a model whose input size is
    not 224 gets a plain resize to it (no crop)."""
    return pp.native(
        f"dataset protocol: native-size stimuli, no resize / crop (plain resize to "
        f"{pp.crop_size}x{pp.crop_size} when the image has another size), "
        f"mean/std of: {pp.source or 'the model'}"
    )


#: Dataset-owned input recipes: name -> (the model's preprocessing -> the one to use).
INPUT_RECIPES: Registry[Callable[[Preprocessing], Preprocessing]] = Registry("input recipe")
INPUT_RECIPES.add("native", native_input)


def dataset_preprocessing(spec: DatasetSpec, pp: Preprocessing) -> Preprocessing:
    """The preprocessing a model with recipe ``pp`` is evaluated with on ``spec``."""
    recipe = spec.protocol.input_recipe
    return pp if recipe is None else INPUT_RECIPES.get(recipe)(pp)


# --------------------------------------------------------------------------- folder helpers


def relative_id(path: Path, root: Path) -> str:
    """A sample id: ``path`` relative to the dataset ``root``, with forward slashes."""
    return path.relative_to(root).as_posix()


def is_image(p: Path) -> bool:
    """A file with an image suffix."""
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def images(folder: Path) -> Iterator[Path]:
    """Image files directly in ``folder``, sorted by name."""
    with os.scandir(folder) as it:
        names = sorted(
            e.name
            for e in it
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        )
    return (folder / n for n in names)


def subdirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted."""
    with os.scandir(folder) as it:
        return sorted(folder / e.name for e in it if e.is_dir())


def wnid_folder_samples(
    root: Path, base: Path, allowed: frozenset[int] | None, name: str, group: str = "standard"
) -> list[Sample]:
    """Samples of ``base/<wnid>/*`` labelled by ImageNet-1k index; ids relative to ``root``.

    Folders that are not wnids are ignored; a wnid outside ImageNet-1k (or outside
    ``allowed``) is a layout error.
    """
    index = imagenet_wnid_index()
    out = []
    for d in subdirs(base):
        if not WNID.match(d.name):
            continue
        label = index.get(d.name, -1)
        if label < 0 or (allowed is not None and label not in allowed):
            raise DatasetLayoutError(
                f"{name}: folder {d} is not one of the dataset's ImageNet classes."
            )
        out += [Sample(f, relative_id(f, root), label, group=group) for f in images(d)]
    return out


def aligned_rows(rows: list[tuple[str, ...]]) -> list[str]:
    """Plain-text table lines: every column but the last padded to its widest cell, two
    spaces apart (the last, a folder path, left as it is)."""
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    return ["  ".join(r[i].ljust(widths[i]) for i in range(n)) + "  " + r[n] for r in rows]


def download_hint(name: str) -> str:
    """The start of a dataset's "how to get it": the ``--download`` command."""
    return f"`python -m precompute --download {name} --data-root DIR`, or by hand: "
