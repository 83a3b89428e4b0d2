"""Datasets: a registry of on-disk layouts, sample discovery and fault-tolerant decoding.

Each :class:`DatasetSpec` knows its conventional folder under ``--data-root``, how to list
its samples (path, id relative to the dataset root, ImageNet label) and which evaluations
apply to it. Decoding happens once per image in DataLoader workers; corrupt files are
reported, never fatal.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from beyond_inet.preprocess import Preprocessing
from beyond_inet.registry import Registry

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
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
class DatasetSpec:
    """A dataset the tool knows: where it lives, its layout, how to list it, how to score it."""

    name: str
    subdir: str
    layout: str
    how_to_get: str
    find: Callable[[Path], list[Sample]] = field(compare=False)
    evaluations: tuple[str, ...] = ()
    decision: str | None = None  # name of a decision rule (e.g. 16-class cue-conflict)
    decision_target: Callable[[str], str] | None = field(default=None, compare=False)
    description: str = ""
    #: the ImageNet-1k indices the dataset's classes map to (e.g. the 200 of ImageNet-R /
    #: -A; read lazily): softmax and predictions are restricted to them.
    class_subset: Callable[[], tuple[int, ...]] | None = field(default=None, compare=False)
    #: whether the invariance view grids (scale / shift / resolution) apply to this dataset.
    transform_views: bool = False
    #: run-level evaluations that need every view at once (e.g. agreement, mCE).
    run_evaluations: tuple[str, ...] = ()
    #: evaluations for the transform views other than ``standard`` (scale / shift /
    #: resolution); ``None`` = the same as ``evaluations``. Keeps the heavy ones (bootstrap
    #: calibration, ImageNet-X) to the standard view.
    view_evaluations: tuple[str, ...] | None = None
    #: the dataset's own input recipe (a name in :data:`INPUT_RECIPES`), when its protocol
    #: fixes how images are fed (cue-conflict: native size); ``None`` = the model's own.
    input_recipe: str | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


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
    return pp if spec.input_recipe is None else INPUT_RECIPES.get(spec.input_recipe)(pp)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def imagenet_x_annotation_dir() -> Path:
    """The imagenet-x package's ``annotations`` folder, found without importing the package
    (its import pulls in scipy, seconds that ``--list-datasets`` should not pay)."""
    import importlib.util

    spec = importlib.util.find_spec("imagenet_x")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the imagenet-x package is not installed (pip install imagenet-x)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "annotations"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (from the imagenet-x package)."""
    labels = pd.read_csv(
        imagenet_x_annotation_dir() / "imagenet_labels.txt", names=["wnid", "label"]
    )
    return tuple(labels["wnid"])


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """Human-readable ImageNet-1k class names (open_clip's list, index order)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


@lru_cache(maxsize=1)
def imagenet_val_labels() -> dict[str, int]:
    """``ILSVRC2012_val_XXXXXXXX.JPEG`` -> class index, from the imagenet-x package's table."""
    df = pd.read_csv(imagenet_x_annotation_dir() / "filename_label.csv")
    return dict(zip(df["file_name"], df["label"].astype(int), strict=True))


@lru_cache(maxsize=1)
def imagenet_wnid_index() -> dict[str, int]:
    """wnid -> ImageNet-1k class index."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


def relative_id(path: Path, root: Path) -> str:
    """A sample id: ``path`` relative to the dataset ``root``, with forward slashes."""
    return path.relative_to(root).as_posix()


def find_imagenet_val(root: Path) -> list[Sample]:
    """ImageNet val as 1000-class wnid folders or flat ``ILSVRC2012_val_*.JPEG`` files."""
    wnid_index = imagenet_wnid_index()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and WNID.match(p.name))
    if class_dirs:
        unknown = [p.name for p in class_dirs if p.name not in wnid_index]
        if unknown:
            raise DatasetLayoutError(f"{root}: folders {unknown[:3]} are not ImageNet-1k wnids.")
        return [
            Sample(f, relative_id(f, root), wnid_index[d.name])
            for d in class_dirs
            for f in sorted(d.iterdir())
            if _is_image(f)
        ]
    labels = imagenet_val_labels()
    files = sorted(p for p in root.iterdir() if p.is_file() and VAL_NAME.match(p.name))
    out = []
    for f in files:
        canonical = f"ILSVRC2012_val_{VAL_NAME.match(f.name).group(1)}.JPEG"  # type: ignore[union-attr]
        if canonical in labels:
            out.append(Sample(f, relative_id(f, root), labels[canonical]))
    return out


def find_cue_conflict(root: Path) -> list[Sample]:
    """Cue-conflict stimuli: ``<shape>/<shape><i>-<texture><j>.png`` (label: none)."""
    from beyond_inet.cue_conflict import CATEGORIES, parse_stimulus_name

    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name in CATEGORIES):
        for f in sorted(d.iterdir()):
            if _is_image(f):
                parse_stimulus_name(f.name)  # raises on names that are not stimuli
                out.append(Sample(f, relative_id(f, root), -1))
    return out


def _shape_of(sample_id: str) -> str:
    from beyond_inet.cue_conflict import parse_stimulus_name

    return parse_stimulus_name(sample_id)[0]


DATASETS.add(
    "imagenet-val",
    DatasetSpec(
        name="imagenet-val",
        subdir="imagenet/val",
        layout="imagenet/val/<wnid>/*.JPEG (1000 class folders) or imagenet/val/"
        "ILSVRC2012_val_XXXXXXXX.JPEG (flat; labels from the imagenet-x package)",
        how_to_get="Manual download under the ImageNet licence (image-net.org, ILSVRC2012 "
        "validation images); extract into <data-root>/imagenet/val/.",
        find=find_imagenet_val,
        evaluations=("accuracy", "calibration", "imagenet_x", "real"),
        transform_views=True,
        view_evaluations=("accuracy",),
        run_evaluations=("agreement",),
        description="ImageNet-1k validation (50,000 images)",
    ),
)

DATASETS.add(
    "cue-conflict",
    DatasetSpec(
        name="cue-conflict",
        subdir="cue-conflict",
        layout="cue-conflict/<shape>/<shape><i>-<texture><j>.png (16 category folders)",
        how_to_get="`python -m precompute --download cue-conflict --data-root DIR` "
        "(model-vs-human's release), or the texture-vs-shape stimuli of Geirhos et al. "
        "(CC-BY-4.0), github.com/rgeirhos/texture-vs-shape, "
        "stimuli/style-transfer-preprocessed-512.",
        find=find_cue_conflict,
        evaluations=("shape_bias",),
        input_recipe="native",
        decision="cue_conflict_16",
        decision_target=lambda sample_id: _shape_of(sample_id),
        description="Cue-conflict stimuli (1,280 images, 16 categories)",
    ),
)

# The robustness datasets (ImageNet-V2/-Sketch/-R/-A/-C/-Hard, PUG-ImageNet) register here.
import beyond_inet.robustness  # noqa: E402, F401


@dataclass(frozen=True)
class FoundDataset:
    """A dataset located on disk with its listed samples."""

    spec: DatasetSpec
    root: Path
    samples: list[Sample]

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
    """The folder for ``spec``: ``override`` if given, else ``data_root / spec.subdir``."""
    return override if override is not None else data_root / spec.subdir


def discover(spec: DatasetSpec, root: Path, limit: int | None = None) -> FoundDataset | None:
    """List ``spec`` under ``root``; ``None`` when the folder is absent.

    Raises :class:`DatasetLayoutError` when the folder exists but holds no usable images.
    """
    if not root.exists():
        return None
    if not root.is_dir():
        raise DatasetLayoutError(f"{spec.name}: {root} is not a folder. Expected {spec.layout}.")
    samples = spec.find(root)
    if not samples:
        raise DatasetLayoutError(
            f"{spec.name}: no images found in {root}. Expected layout: {spec.layout}."
        )
    return FoundDataset(spec, root, samples[:limit] if limit else samples)


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def load_rgb(path: Path | str) -> Image.Image:
    """Open an image as 8-bit RGB: EXIF orientation applied; grayscale, palette, CMYK,
    alpha (composited on white) and 16-bit inputs converted. Raises on corrupt files."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB (see :func:`load_rgb`)."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray((arr / hi * 255.0).round().clip(0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    return im.convert("RGB")


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 CHW tensor."""
    import torch

    return torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


@dataclass
class Decoded:
    """A decoded item: its index in the sample list and the image, or the error."""

    index: int
    image: torch.Tensor | None
    error: str | None = None


class DecodedImages:
    """A map-style dataset for ``torch.utils.data.DataLoader``: decodes each sample once to
    a uint8 CHW tensor; failures become ``Decoded.error``."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.paths = [str(s.path) for s in samples]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Decoded:
        try:
            return Decoded(i, pil_to_tensor(load_rgb(self.paths[i])))
        except Exception as e:
            return Decoded(i, None, f"{type(e).__name__}: {e}")


class DecodedBatch(list[Decoded]):
    """A list of decoded items; DataLoader's ``pin_memory=True`` pins each image."""

    def pin_memory(self) -> DecodedBatch:
        """Pin every image tensor (called by the DataLoader's pinning thread)."""
        for d in self:
            if d.image is not None:
                d.image = d.image.pin_memory()
        return self


def collate_decoded(batch: list[Decoded]) -> DecodedBatch:
    """Keep variable-size images as a list (each model/view resizes on the device)."""
    return DecodedBatch(batch)
