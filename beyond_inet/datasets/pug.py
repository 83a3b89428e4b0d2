"""PUG-ImageNet (Bordes et al. 2023): photorealistic renders, one factor changed at a time;
each factor subset is a view, per-image factor values come from the CSV annotations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from beyond_inet.datasets.base import (
    APPLY_TEMPERATURE,
    DatasetLayoutError,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    download_hint,
    images,
    relative_id,
    subdirs,
)
from beyond_inet.reference import pug_factor_columns

PUG_CLASS_MAP = "class_to_imagenet_idx.json"


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
    import pandas as pd

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
        for d in subdirs(fdir):
            if d.name not in mapping:
                raise DatasetLayoutError(
                    f"pug-imagenet: class folder {d} is not in {PUG_CLASS_MAP}."
                )
            labels = mapping[d.name]
            for f in images(d):
                rel = relative_id(f, root)
                value = _lookup(tables, (rel, relative_id(f, fdir), f.name))
                out.append(
                    Sample(f, rel, labels[0], group=factor, alt_labels=labels, factor_value=value)
                )
    return out


PUG_IMAGENET = DatasetSpec(
    name="pug-imagenet",
    description="PUG-ImageNet photorealistic renders (88,328 images, 151 classes)",
    layout=Layout(
        "pug-imagenet",
        "pug-imagenet/<factor>/<PUG class>/*.png for the 10 factor subsets ("
        "Worlds, Camera_Pitch, ..., Scene_Light) + class_to_imagenet_idx.json "
        "(+ optional labels_pug_imagenet.csv with per-image factor values)",
        find_pug_imagenet,
    ),
    how_to_get=download_hint("pug-imagenet") + "PUG_IMAGENET.tar.gz from "
    "github.com/facebookresearch/PUG (CC-BY-NC).",
    protocol=Protocol(
        evaluations=("accuracy", "calibration", "factor_values"), roles=APPLY_TEMPERATURE
    ),
)
