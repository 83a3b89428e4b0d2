"""The OOD sets of OpenOOD v1.5's ImageNet-1k benchmark (near: SSB-hard, NINCO; far:
iNaturalist, Textures, OpenImage-O) and ImageNet-O: images of none of ImageNet-1k's
classes, unlabelled here. Each is scored against ImageNet val by the ``ood`` cross-dataset
evaluation (:mod:`beyond_inet.scoring.ood`); the images themselves get no accuracy."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from beyond_inet.datasets.base import (
    IMAGE_SUFFIXES,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    download_hint,
    relative_id,
)

#: What an OOD set is scored by: the ``ood`` cross-dataset evaluation, nothing per image.
OOD_PROTOCOL = Protocol(roles=(("ood", "out-of-distribution"),))
#: Where the sets OpenOOD hosts itself (no public URL of their own) come from.
OPENOOD = (
    "OpenOOD v1.5's download script (github.com/Jingkang50/OpenOOD, "
    "scripts/download/download.py --contents datasets --datasets ood_v1.5), "
)


def all_images(base: Path, root: Path | None = None) -> list[Sample]:
    """Every image under ``base`` (any depth, sorted), unlabelled; ids relative to
    ``root`` (default ``base``)."""
    root = root or base
    out = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                path = Path(folder) / name
                out.append(Sample(path, relative_id(path, root)))
    return out


def inside(subfolder: str) -> Callable[[Path], list[Sample]]:
    """Every image under ``<root>/<subfolder>`` when that folder exists (the part of an
    archive the benchmark uses), else under ``<root>``."""

    def find(root: Path) -> list[Sample]:
        base = root / subfolder
        return all_images(base, root) if base.is_dir() else all_images(root)

    return find


def _ood(name: str, subdir: str, description: str, find: Callable, how: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=description,
        layout=Layout(subdir, f"{subdir}/**/*.<image> (any folders below; unlabelled)", find),
        how_to_get=how,
        protocol=OOD_PROTOCOL,
    )


OOD_SSB_HARD = _ood(
    "ood-ssb-hard",
    "ood/ssb_hard",
    "SSB-hard (near-OOD, 49,000 ImageNet-21k images of classes semantically close to "
    "ImageNet-1k; Vaze et al. 2022)",
    all_images,
    OPENOOD + "its images_largescale/ssb_hard folder.",
)
OOD_NINCO = _ood(
    "ood-ninco",
    "ood/ninco",
    "NINCO (near-OOD, 5,879 images of 64 classes checked to be free of ImageNet-1k objects; "
    "Bitterwolf et al. 2023)",
    inside("NINCO_OOD_classes"),
    download_hint("ood-ninco") + "NINCO_all.tar.gz of zenodo.org/record/8013288; only its "
    "NINCO_OOD_classes folder is used.",
)
OOD_INATURALIST = _ood(
    "ood-inaturalist",
    "ood/inaturalist",
    "iNaturalist OOD subset (far-OOD, 10,000 plant images of 110 classes not in ImageNet-1k; "
    "Huang & Li 2021)",
    all_images,
    download_hint("ood-inaturalist") + "iNaturalist.tar.gz of "
    "pages.cs.wisc.edu/~huangrui/imagenet-ood/.",
)
OOD_TEXTURES = _ood(
    "ood-textures",
    "ood/textures",
    "Textures / DTD (far-OOD, 5,640 texture images of 47 categories; Cimpoi et al. 2014)",
    inside("images"),
    download_hint("ood-textures") + "dtd-r1.0.1.tar.gz of www.robots.ox.ac.uk/~vgg/data/dtd/ "
    "(its images folder).",
)
OOD_OPENIMAGE_O = _ood(
    "ood-openimage-o",
    "ood/openimage_o",
    "OpenImage-O (far-OOD, 15,869 OpenImages photos with no ImageNet-1k object; Wang et al. 2022)",
    all_images,
    OPENOOD + "its images_largescale/openimage_o folder.",
)
IMAGENET_O = _ood(
    "imagenet-o",
    "imagenet-o",
    "ImageNet-O (2,000 adversarially filtered ImageNet-22k images outside ImageNet-1k that "
    "ResNet-50 classifies confidently; Hendrycks et al. 2021)",
    all_images,
    download_hint("imagenet-o") + "imagenet-o.tar of people.eecs.berkeley.edu/~hendrycks/.",
)

#: In the order OpenOOD reports them (near, far), then ImageNet-O.
OOD_SETS: tuple[DatasetSpec, ...] = (
    OOD_SSB_HARD,
    OOD_NINCO,
    OOD_INATURALIST,
    OOD_TEXTURES,
    OOD_OPENIMAGE_O,
    IMAGENET_O,
)


@dataclass(frozen=True)
class OodSet:
    """How an OOD set is reported: its short label and OpenOOD v1.5's group (its headline
    numbers are the near-OOD and far-OOD means; ImageNet-O stands alone)."""

    dataset: str
    label: str
    group: str


OOD_REPORT: tuple[OodSet, ...] = (
    OodSet("ood-ssb-hard", "SSB-hard", "near-OOD"),
    OodSet("ood-ninco", "NINCO", "near-OOD"),
    OodSet("ood-inaturalist", "iNaturalist", "far-OOD"),
    OodSet("ood-textures", "Textures", "far-OOD"),
    OodSet("ood-openimage-o", "OpenImage-O", "far-OOD"),
    OodSet("imagenet-o", "ImageNet-O", "ImageNet-O"),
)
