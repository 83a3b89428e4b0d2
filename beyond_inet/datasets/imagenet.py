"""ImageNet-1k validation: 1000 wnid class folders, or the flat ``ILSVRC2012_val_*`` files
labelled from the imagenet-x package's table. Also scored against ImageNet-ReaL and
ImageNet-X, and seen through the invariance views."""

from __future__ import annotations

import re
from pathlib import Path

from beyond_inet.datasets.base import (
    WNID,
    DatasetLayoutError,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    is_image,
    relative_id,
)
from beyond_inet.reference import imagenet_val_labels, imagenet_wnid_index

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)


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
            if is_image(f)
        ]
    labels = imagenet_val_labels()
    out = []
    for f in sorted(p for p in root.iterdir() if p.is_file() and VAL_NAME.match(p.name)):
        canonical = f"ILSVRC2012_val_{VAL_NAME.match(f.name).group(1)}.JPEG"  # type: ignore[union-attr]
        if canonical in labels:
            out.append(Sample(f, relative_id(f, root), labels[canonical]))
    return out


IMAGENET_VAL = DatasetSpec(
    name="imagenet-val",
    description="ImageNet-1k validation (50,000 images)",
    layout=Layout(
        "imagenet/val",
        "imagenet/val/<wnid>/*.JPEG (1000 class folders) or imagenet/val/"
        "ILSVRC2012_val_XXXXXXXX.JPEG (flat; labels from the imagenet-x package)",
        find_imagenet_val,
    ),
    how_to_get="Manual download under the ImageNet licence (image-net.org, ILSVRC2012 "
    "validation images); extract into <data-root>/imagenet/val/.",
    protocol=Protocol(
        evaluations=("accuracy", "calibration", "imagenet_x", "real"),
        view_evaluations=("accuracy",),
        run_evaluations=("agreement",),
        transform_views=True,
        roles=(("temperature", "fit"), ("ood", "in-distribution")),
    ),
)
