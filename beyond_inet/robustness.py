"""Robustness datasets: ImageNet-V2, -Sketch, -R, -A, -C, -Hard and PUG-ImageNet.

Each dataset is a :class:`~beyond_inet.data.DatasetSpec` registered in
:data:`~beyond_inet.data.DATASETS` (this module is imported by :mod:`beyond_inet.data`).
Class lists and label tables come from the packages that ship them (timm's ImageNet-R/-A
indices and ImageNet-ReaL labels, the imagenet-x wnid list); the AlexNet ImageNet-C errors
and the PUG factor -> annotation-column table are data files in ``beyond_inet/resources``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pkgutil
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from beyond_inet.data import (
    DATASETS,
    IMAGE_SUFFIXES,
    WNID,
    DatasetLayoutError,
    DatasetSpec,
    Sample,
    imagenet_wnid_index,
    relative_id,
)

# --------------------------------------------------------------------------------------
# Label tables shipped by other packages
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Folder helpers
# --------------------------------------------------------------------------------------


def _images(folder: Path) -> Iterator[Path]:
    """Image files directly in ``folder``, sorted by name."""
    with os.scandir(folder) as it:
        names = sorted(
            e.name
            for e in it
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        )
    return (folder / n for n in names)


def _subdirs(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(folder / e.name for e in it if e.is_dir())


def _wnid_folder_samples(
    root: Path, base: Path, allowed: frozenset[int] | None, name: str, group: str = "standard"
) -> list[Sample]:
    """Samples of ``base/<wnid>/*`` labelled by ImageNet-1k index; ids relative to ``root``.

    Folders that are not wnids are ignored; a wnid outside ImageNet-1k (or outside
    ``allowed``) is a layout error.
    """
    index = imagenet_wnid_index()
    out = []
    for d in _subdirs(base):
        if not WNID.match(d.name):
            continue
        label = index.get(d.name, -1)
        if label < 0 or (allowed is not None and label not in allowed):
            raise DatasetLayoutError(
                f"{name}: folder {d} is not one of the dataset's ImageNet classes."
            )
        out += [Sample(f, relative_id(f, root), label, group=group) for f in _images(d)]
    return out


# --------------------------------------------------------------------------------------
# Finders (each returns [] for a folder without usable images; discover() reports that)
# --------------------------------------------------------------------------------------


def find_imagenet_v2(root: Path) -> list[Sample]:
    """ImageNet-V2: ``<class index 0..999>/*.jpeg`` (the published tarball's layout)."""
    out = []
    for d in _subdirs(root):
        if d.name.isdigit() and int(d.name) < 1000:
            out += [Sample(f, relative_id(f, root), int(d.name)) for f in _images(d)]
    return out


def find_imagenet_sketch(root: Path) -> list[Sample]:
    """ImageNet-Sketch: ``<wnid>/*`` or ``sketch/<wnid>/*`` (as the zip extracts)."""
    base = root / "sketch" if (root / "sketch").is_dir() else root
    return _wnid_folder_samples(root, base, None, "imagenet-sketch")


def find_imagenet_r(root: Path) -> list[Sample]:
    """ImageNet-R: ``<wnid>/*`` for its 200 classes."""
    return _wnid_folder_samples(root, root, frozenset(imagenet_r_indices()), "imagenet-r")


def find_imagenet_a(root: Path) -> list[Sample]:
    """ImageNet-A: ``<wnid>/*`` for its 200 classes."""
    return _wnid_folder_samples(root, root, frozenset(imagenet_a_indices()), "imagenet-a")


IMAGENET_C_VIEW = re.compile(r"^(?P<corruption>[a-z_]+):(?P<severity>[1-5])$")


def find_imagenet_c(root: Path) -> list[Sample]:
    """ImageNet-C: ``<corruption>/<severity 1..5>/<wnid>/*``; group ``<corruption>:<severity>``.

    Every corruption folder found is used (the 15 benchmark corruptions and the 4 extra
    ones); only the 15 with AlexNet baselines enter the mCE.
    """
    out = []
    for c in _subdirs(root):
        if not re.fullmatch(r"[a-z_]+", c.name):
            continue
        for s in _subdirs(c):
            if s.name in {"1", "2", "3", "4", "5"}:
                out += _wnid_folder_samples(root, s, None, "imagenet-c", f"{c.name}:{s.name}")
    return out


def _parse_label_list(value: object) -> tuple[int, ...]:
    """``[1, 2]`` / ``"[1, 2]"`` / ``"1;2"`` / ``3`` -> ImageNet-1k indices (others dropped)."""
    if isinstance(value, str):
        text = value.strip()
        value = (
            json.loads(text)
            if text.startswith("[")
            else [v for v in re.split(r"[;,\s]+", text) if v]
        )
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(int(v) for v in items if 0 <= int(v) < 1000)


def _hard_records(root: Path) -> list[dict[str, object]]:
    jsonl, table = root / "metadata.jsonl", root / "metadata.csv"
    if jsonl.is_file():
        lines = jsonl.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    if table.is_file():
        return pd.read_csv(table, dtype=str, keep_default_na=False).to_dict("records")
    raise DatasetLayoutError(
        f"imagenet-hard: {root} has no metadata.jsonl (or metadata.csv) with file_name and "
        "label columns."
    )


def find_imagenet_hard(root: Path) -> list[Sample]:
    """ImageNet-Hard: images listed in ``metadata.jsonl`` / ``metadata.csv`` with ``file_name``
    (relative to the root), ``label`` (a list of acceptable ImageNet-1k indices) and optional
    ``origin``. The first label is the primary one; any of them counts as correct."""
    out = []
    for rec in _hard_records(root):
        if "file_name" not in rec or "label" not in rec:
            raise DatasetLayoutError(
                f"imagenet-hard: metadata rows need file_name and label, got {sorted(rec)}."
            )
        labels = _parse_label_list(rec["label"])
        path = root / str(rec["file_name"])
        if not labels or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        origin = str(rec.get("origin") or "") or None
        out.append(
            Sample(path, relative_id(path, root), labels[0], alt_labels=labels, factor_value=origin)
        )
    return out


# --------------------------------------------------------------------------------------
# PUG-ImageNet
# --------------------------------------------------------------------------------------

PUG_CLASS_MAP = "class_to_imagenet_idx.json"


@lru_cache(maxsize=1)
def pug_factor_columns() -> dict[str, str]:
    """Factor subset folder -> the annotation column holding its per-image value (data)."""
    text = (
        resources.files("beyond_inet.resources")
        .joinpath("pug_imagenet_factors.csv")
        .read_text("utf-8")
    )
    return {r["factor"]: r["labels_column"] for r in csv.DictReader(io.StringIO(text))}


def pug_class_map(root: Path) -> dict[str, tuple[int, ...]]:
    """PUG class name -> its ImageNet-1k indices, from the dataset's own JSON."""
    path = root / PUG_CLASS_MAP
    if not path.is_file():
        raise DatasetLayoutError(f"pug-imagenet: {path} is missing (it ships with the dataset).")
    return {k: tuple(int(i) for i in v) for k, v in json.loads(path.read_text("utf-8")).items()}


def _pug_annotations(root: Path, factor: str) -> list[dict[str, str]]:
    """Lookup tables image key -> value of ``factor`` from the CSV annotations (``filename``
    column), in priority order: CSVs in the factor folder, then those in the dataset root.
    Keys: the file name as written in the CSV and its base name."""
    column = pug_factor_columns()[factor]
    tables = []
    for folder in (root / factor, root):
        values: dict[str, str] = {}
        for table in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            df = pd.read_csv(table, dtype=str, keep_default_na=False)
            if "filename" not in df or column not in df:
                continue
            for name, value in zip(df["filename"], df[column], strict=True):
                name = name.replace("\\", "/").removeprefix("./")
                values[name] = value
                values.setdefault(name.rsplit("/", 1)[-1], value)
        tables.append(values)
    return tables


def _lookup(tables: list[dict[str, str]], keys: Sequence[str]) -> str | None:
    for values in tables:
        for k in keys:
            if values.get(k):
                return values[k]
    return None


def find_pug_imagenet(root: Path) -> list[Sample]:
    """PUG-ImageNet: ``<factor>/<PUG class>/*`` for the 10 factor subsets, the root's
    ``class_to_imagenet_idx.json`` mapping PUG classes to ImageNet classes, and optional
    per-image factor values from ``labels_pug_imagenet.csv``-style annotations."""
    mapping = pug_class_map(root)
    out = []
    for factor in pug_factor_columns():
        fdir = root / factor
        if not fdir.is_dir():
            continue
        tables = _pug_annotations(root, factor)
        for d in _subdirs(fdir):
            if d.name not in mapping:
                raise DatasetLayoutError(
                    f"pug-imagenet: class folder {d} is not in {PUG_CLASS_MAP}."
                )
            labels = mapping[d.name]
            for f in _images(d):
                rel = relative_id(f, root)
                value = _lookup(tables, (rel, relative_id(f, fdir), f.name))
                out.append(
                    Sample(f, rel, labels[0], group=factor, alt_labels=labels, factor_value=value)
                )
    return out


# --------------------------------------------------------------------------------------
# ImageNet-C corruption errors (Hendrycks & Dietterich, ICLR 2019)
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def alexnet_errors() -> dict[str, dict[int, float]]:
    """corruption -> severity -> AlexNet top-1 error on ImageNet-C (the benchmark's 15)."""
    text = (
        resources.files("beyond_inet.resources")
        .joinpath("imagenet_c_alexnet_errors.csv")
        .read_text("utf-8")
    )
    out: dict[str, dict[int, float]] = {}
    for r in csv.DictReader(io.StringIO(text)):
        out.setdefault(r["corruption"], {})[int(r["severity"])] = float(r["alexnet_top1_error"])
    return out


def parse_imagenet_c_view(view: str) -> tuple[str, int] | None:
    """``'fog:3'`` -> ``('fog', 3)``; ``None`` for other view names."""
    m = IMAGENET_C_VIEW.match(view)
    return (m["corruption"], int(m["severity"])) if m else None


def corruption_errors(errors: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c} for every corruption with an AlexNet
    baseline, over the severities present for it (all five on the full benchmark)."""
    base = alexnet_errors()
    out = {}
    for c, by_sev in errors.items():
        if c in base and by_sev:
            out[c] = sum(by_sev.values()) / sum(base[c][s] for s in by_sev)
    return out


def mean_corruption_error(ce: Mapping[str, float]) -> float:
    """mCE: the mean of the corruption errors (NaN when there are none)."""
    return sum(ce.values()) / len(ce) if ce else math.nan


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------

_DOWNLOAD = "`python -m precompute --download {name} --data-root DIR`, or by hand: "

ROBUSTNESS_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        name="imagenet-v2",
        subdir="imagenetv2-matched-frequency",
        layout="imagenetv2-matched-frequency/<class index 0..999>/*.jpeg",
        how_to_get=_DOWNLOAD.format(name="imagenet-v2") + "the MatchedFrequency tarball of "
        "github.com/modestyachts/ImageNetV2 (its folder imagenetv2-matched-frequency-format-val"
        " renamed).",
        find=find_imagenet_v2,
        evaluations=("accuracy", "calibration"),
        description="ImageNet-V2 MatchedFrequency (10,000 images)",
    ),
    DatasetSpec(
        name="imagenet-sketch",
        subdir="imagenet-sketch",
        layout="imagenet-sketch/<wnid>/*.JPEG or imagenet-sketch/sketch/<wnid>/*.JPEG",
        how_to_get=_DOWNLOAD.format(name="imagenet-sketch") + "ImageNet-Sketch.zip from "
        "github.com/HaohanWang/ImageNet-Sketch (Hugging Face songweig/imagenet_sketch).",
        find=find_imagenet_sketch,
        evaluations=("accuracy", "calibration"),
        description="ImageNet-Sketch (50,889 images)",
    ),
    DatasetSpec(
        name="imagenet-r",
        subdir="imagenet-r",
        layout="imagenet-r/<wnid>/*.jpg (200 class folders)",
        how_to_get=_DOWNLOAD.format(name="imagenet-r")
        + "people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar.",
        find=find_imagenet_r,
        evaluations=("accuracy", "calibration", "accuracy_1000way"),
        class_subset=imagenet_r_indices,
        description="ImageNet-R renditions (30,000 images, 200 classes)",
    ),
    DatasetSpec(
        name="imagenet-a",
        subdir="imagenet-a",
        layout="imagenet-a/<wnid>/*.jpg (200 class folders)",
        how_to_get=_DOWNLOAD.format(name="imagenet-a")
        + "people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar.",
        find=find_imagenet_a,
        evaluations=("accuracy", "calibration", "accuracy_1000way"),
        class_subset=imagenet_a_indices,
        description="ImageNet-A natural adversarial examples (7,500 images, 200 classes)",
    ),
    DatasetSpec(
        name="imagenet-c",
        subdir="imagenet-c",
        layout="imagenet-c/<corruption>/<severity 1..5>/<wnid>/*.JPEG",
        how_to_get=_DOWNLOAD.format(name="imagenet-c") + "blur, digital, noise and weather "
        ".tar from zenodo.org/record/2235448, extracted into one folder.",
        find=find_imagenet_c,
        evaluations=("accuracy", "calibration"),
        run_evaluations=("imagenet_c",),
        description="ImageNet-C (15 corruptions x 5 severities x 50,000 images)",
    ),
    DatasetSpec(
        name="imagenet-hard",
        subdir="imagenet-hard",
        layout="imagenet-hard/metadata.jsonl (or metadata.csv): file_name, label (list of "
        "ImageNet-1k indices), optional origin; images at the file_name paths",
        how_to_get="Manual: export the Hugging Face dataset taesiri/imagenet-hard (validation "
        "split) as image files plus metadata.jsonl with file_name, label and origin.",
        find=find_imagenet_hard,
        evaluations=("accuracy", "calibration", "factor_values"),
        description="ImageNet-Hard (10,980 images, multi-label)",
    ),
    DatasetSpec(
        name="pug-imagenet",
        subdir="pug-imagenet",
        layout="pug-imagenet/<factor>/<PUG class>/*.png for the 10 factor subsets ("
        "Worlds, Camera_Pitch, ..., Scene_Light) + class_to_imagenet_idx.json "
        "(+ optional labels_pug_imagenet.csv with per-image factor values)",
        how_to_get=_DOWNLOAD.format(name="pug-imagenet") + "PUG_IMAGENET.tar.gz from "
        "github.com/facebookresearch/PUG (CC-BY-NC).",
        find=find_pug_imagenet,
        evaluations=("accuracy", "calibration", "factor_values"),
        description="PUG-ImageNet photorealistic renders (88,328 images, 151 classes)",
    ),
)

for _spec in ROBUSTNESS_DATASETS:
    DATASETS.add(_spec.name, _spec)


def sorted_values(values: Sequence[str]) -> list[str]:
    """Factor values in numeric order when they all parse as numbers, else text order."""
    uniq = sorted(set(values))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq
