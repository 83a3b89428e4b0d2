"""ImageNet-Hard (taesiri/imagenet-hard, exported locally): images listed in a metadata file
with every acceptable ImageNet-1k label and the benchmark the image comes from."""

from __future__ import annotations

import json
import re
from pathlib import Path

from beyond_inet.datasets.base import (
    APPLY_TEMPERATURE,
    IMAGE_SUFFIXES,
    DatasetLayoutError,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    relative_id,
)


def parse_label_list(value: object) -> tuple[int, ...]:
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
    import pandas as pd

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
        labels = parse_label_list(rec["label"])
        path = root / str(rec["file_name"])
        if not labels or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        origin = str(rec.get("origin") or "") or None
        out.append(
            Sample(path, relative_id(path, root), labels[0], alt_labels=labels, factor_value=origin)
        )
    return out


IMAGENET_HARD = DatasetSpec(
    name="imagenet-hard",
    description="ImageNet-Hard (10,980 images, multi-label)",
    layout=Layout(
        "imagenet-hard",
        "imagenet-hard/metadata.jsonl (or metadata.csv): file_name, label (list of "
        "ImageNet-1k indices), optional origin; images at the file_name paths",
        find_imagenet_hard,
    ),
    how_to_get="Manual: export the Hugging Face dataset taesiri/imagenet-hard (validation "
    "split) as image files plus metadata.jsonl with file_name, label and origin.",
    protocol=Protocol(
        evaluations=("accuracy", "calibration", "factor_values"), roles=APPLY_TEMPERATURE
    ),
)
