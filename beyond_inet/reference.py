"""Reference tables: class lists and label tables, each read once from where it ships.

A leaf module (it imports nothing of beyond_inet): the ImageNet-1k wnids, class names and
validation labels (the ``imagenet-x`` package), ImageNet-R / -A class subsets and the
ImageNet-ReaL labels (timm's ``_info``), the ImageNet-X factors and annotations, the 16
cue-conflict categories with their ImageNet classes, the AlexNet ImageNet-C errors and the
PUG-ImageNet factor columns (``beyond_inet/resources``), and the 80 OpenAI prompt templates
(open_clip). Everything is cached; callers must not mutate what they get.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import pkgutil
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

NUM_IMAGENET_CLASSES = 1000

# --------------------------------------------------------------------------- ImageNet-1k


def imagenet_x_annotation_dir() -> Path:
    """The imagenet-x package's ``annotations`` folder, found without importing the package
    (its import pulls in scipy, seconds that ``--list-datasets`` should not pay)."""
    spec = importlib.util.find_spec("imagenet_x")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the imagenet-x package is not installed (pip install imagenet-x)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "annotations"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (from the imagenet-x package)."""
    import pandas as pd

    labels = pd.read_csv(
        imagenet_x_annotation_dir() / "imagenet_labels.txt", names=["wnid", "label"]
    )
    return tuple(labels["wnid"])


@lru_cache(maxsize=1)
def imagenet_wnid_index() -> dict[str, int]:
    """wnid -> ImageNet-1k class index."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """Human-readable ImageNet-1k class names (open_clip's list, index order)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


@lru_cache(maxsize=1)
def imagenet_val_labels() -> dict[str, int]:
    """``ILSVRC2012_val_XXXXXXXX.JPEG`` -> class index, from the imagenet-x package's table."""
    import pandas as pd

    df = pd.read_csv(imagenet_x_annotation_dir() / "filename_label.csv")
    return dict(zip(df["file_name"], df["label"].astype(int), strict=True))


@lru_cache(maxsize=1)
def openai_templates() -> tuple[str, ...]:
    """The 80 OpenAI ImageNet prompt templates as format strings (open_clip's list)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


# --------------------------------------------------------------------------- timm's tables


def _timm_info(name: str) -> str:
    """A file from timm's ``timm/data/_info`` folder as text."""
    data = pkgutil.get_data("timm.data", f"_info/{name}")
    if data is None:
        raise FileNotFoundError(f"timm does not ship _info/{name}; upgrade timm (>= 0.9).")
    return data.decode("utf-8")


@lru_cache(maxsize=1)
def imagenet_r_indices() -> tuple[int, ...]:
    """The 200 ImageNet-1k class indices of ImageNet-R (timm's ``imagenet_r_indices.txt``)."""
    return tuple(int(x) for x in _timm_info("imagenet_r_indices.txt").split())


@lru_cache(maxsize=1)
def imagenet_a_indices() -> tuple[int, ...]:
    """The 200 ImageNet-1k class indices of ImageNet-A (timm's ``imagenet_a_indices.txt``)."""
    return tuple(int(x) for x in _timm_info("imagenet_a_indices.txt").split())


@lru_cache(maxsize=1)
def real_labels() -> dict[str, tuple[int, ...]]:
    """``ILSVRC2012_val_XXXXXXXX.JPEG`` -> its ImageNet-ReaL labels (possibly empty), from
    timm's ``imagenet_real_labels.json`` (Beyer et al., *Are we done with ImageNet?*)."""
    table = json.loads(_timm_info("imagenet_real_labels.json"))
    return {f"ILSVRC2012_val_{i + 1:08d}.JPEG": tuple(labels) for i, labels in enumerate(table)}


# --------------------------------------------------------------------------- ImageNet-X

IMAGENET_X_FACTORS: tuple[str, ...] = (
    "pose",
    "background",
    "pattern",
    "color",
    "smaller",
    "shape",
    "partial_view",
    "subcategory",
    "texture",
    "larger",
    "darker",
    "object_blocking",
    "person_blocking",
    "style",
    "brighter",
    "multiple_objects",
)
"""Equal to ``imagenet_x.FACTORS`` (a test checks it); spelled out because importing
imagenet_x pulls in scipy (~2 s)."""


@lru_cache(maxsize=1)
def imagenet_x_annotations() -> pd.DataFrame:
    """The package's default annotations: val, top factor, prototypes filtered
    (``imagenet_x.load_annotations("top", "val", filter_prototypes=True)``)."""
    import imagenet_x

    return imagenet_x.load_annotations(which_factor="top", partition="val", filter_prototypes=True)


# --------------------------------------------------------------------------- shipped files


def _resource(name: str) -> str:
    return resources.files("beyond_inet.resources").joinpath(name).read_text("utf-8")


CUE_CONFLICT_CATEGORIES: tuple[str, ...] = (
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

CUE_CONFLICT_INDICES_CSV = "cue_conflict_16class_imagenet_indices.csv"


@lru_cache(maxsize=1)
def cue_conflict_category_items() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(category, its sorted ImageNet-1k indices) in category order, from the shipped CSV
    (model-vs-human's ``HumanCategories``); validated once."""
    grouped: dict[str, list[int]] = {c: [] for c in CUE_CONFLICT_CATEGORIES}
    for row in csv.DictReader(io.StringIO(_resource(CUE_CONFLICT_INDICES_CSV))):
        category, index = row["category"], int(row["imagenet_index"])
        if category not in grouped or not 0 <= index < NUM_IMAGENET_CLASSES:
            raise ValueError(f"bad row in {CUE_CONFLICT_INDICES_CSV}: {row}")
        grouped[category].append(index)
    every = [i for indices in grouped.values() for i in indices]
    if len(set(every)) != len(every) or not all(grouped.values()):
        raise ValueError(f"{CUE_CONFLICT_INDICES_CSV}: duplicated index or category without index")
    return tuple((c, tuple(sorted(grouped[c]))) for c in CUE_CONFLICT_CATEGORIES)


@lru_cache(maxsize=1)
def alexnet_imagenet_c_errors() -> dict[str, dict[int, float]]:
    """corruption -> severity -> AlexNet top-1 error on ImageNet-C (the benchmark's 15)."""
    out: dict[str, dict[int, float]] = {}
    for r in csv.DictReader(io.StringIO(_resource("imagenet_c_alexnet_errors.csv"))):
        out.setdefault(r["corruption"], {})[int(r["severity"])] = float(r["alexnet_top1_error"])
    return out


@lru_cache(maxsize=1)
def pug_factor_columns() -> dict[str, str]:
    """PUG-ImageNet factor subset folder -> the annotation column of its per-image value."""
    text = _resource("pug_imagenet_factors.csv")
    return {r["factor"]: r["labels_column"] for r in csv.DictReader(io.StringIO(text))}
