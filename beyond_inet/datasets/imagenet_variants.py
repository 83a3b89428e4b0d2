"""ImageNet-V2, -Sketch, -R and -A: the distribution shifts stored as ImageNet-style class
folders (R and A on their 200 classes: softmax over those classes' logits)."""

from __future__ import annotations

from pathlib import Path

from beyond_inet.datasets.base import (
    APPLY_TEMPERATURE,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    download_hint,
    images,
    relative_id,
    subdirs,
    wnid_folder_samples,
)
from beyond_inet.reference import imagenet_a_indices, imagenet_r_indices

LABELLED = ("accuracy", "calibration")


def find_imagenet_v2(root: Path) -> list[Sample]:
    """ImageNet-V2: ``<class index 0..999>/*.jpeg`` (the published tarball's layout)."""
    out = []
    for d in subdirs(root):
        if d.name.isdigit() and int(d.name) < 1000:
            out += [Sample(f, relative_id(f, root), int(d.name)) for f in images(d)]
    return out


def find_imagenet_sketch(root: Path) -> list[Sample]:
    """ImageNet-Sketch: ``<wnid>/*`` or ``sketch/<wnid>/*`` (as the zip extracts)."""
    base = root / "sketch" if (root / "sketch").is_dir() else root
    return wnid_folder_samples(root, base, None, "imagenet-sketch")


def find_imagenet_r(root: Path) -> list[Sample]:
    """ImageNet-R: ``<wnid>/*`` for its 200 classes."""
    return wnid_folder_samples(root, root, frozenset(imagenet_r_indices()), "imagenet-r")


def find_imagenet_a(root: Path) -> list[Sample]:
    """ImageNet-A: ``<wnid>/*`` for its 200 classes."""
    return wnid_folder_samples(root, root, frozenset(imagenet_a_indices()), "imagenet-a")


IMAGENET_V2 = DatasetSpec(
    name="imagenet-v2",
    description="ImageNet-V2 MatchedFrequency (10,000 images)",
    layout=Layout(
        "imagenetv2-matched-frequency",
        "imagenetv2-matched-frequency/<class index 0..999>/*.jpeg",
        find_imagenet_v2,
    ),
    how_to_get=download_hint("imagenet-v2") + "the MatchedFrequency tarball of "
    "github.com/modestyachts/ImageNetV2 (its folder imagenetv2-matched-frequency-format-val"
    " renamed).",
    protocol=Protocol(evaluations=LABELLED, roles=APPLY_TEMPERATURE),
)

IMAGENET_SKETCH = DatasetSpec(
    name="imagenet-sketch",
    description="ImageNet-Sketch (50,889 images)",
    layout=Layout(
        "imagenet-sketch",
        "imagenet-sketch/<wnid>/*.JPEG or imagenet-sketch/sketch/<wnid>/*.JPEG",
        find_imagenet_sketch,
    ),
    how_to_get=download_hint("imagenet-sketch") + "ImageNet-Sketch.zip from "
    "github.com/HaohanWang/ImageNet-Sketch (Hugging Face songweig/imagenet_sketch).",
    protocol=Protocol(evaluations=LABELLED, roles=APPLY_TEMPERATURE),
)

IMAGENET_R = DatasetSpec(
    name="imagenet-r",
    description="ImageNet-R renditions (30,000 images, 200 classes)",
    layout=Layout("imagenet-r", "imagenet-r/<wnid>/*.jpg (200 class folders)", find_imagenet_r),
    how_to_get=download_hint("imagenet-r") + "people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar.",
    protocol=Protocol(
        evaluations=(*LABELLED, "accuracy_1000way"),
        class_subset=imagenet_r_indices,
        roles=APPLY_TEMPERATURE,
    ),
)

IMAGENET_A = DatasetSpec(
    name="imagenet-a",
    description="ImageNet-A natural adversarial examples (7,500 images, 200 classes)",
    layout=Layout("imagenet-a", "imagenet-a/<wnid>/*.jpg (200 class folders)", find_imagenet_a),
    how_to_get=download_hint("imagenet-a") + "people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar.",
    protocol=Protocol(
        evaluations=(*LABELLED, "accuracy_1000way"),
        class_subset=imagenet_a_indices,
        roles=APPLY_TEMPERATURE,
    ),
)
