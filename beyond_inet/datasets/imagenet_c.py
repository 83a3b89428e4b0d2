"""ImageNet-C (Hendrycks & Dietterich, ICLR 2019): ``<corruption>/<severity>/<wnid>/*``, each
``<corruption>:<severity>`` a view; the corruption errors against AlexNet's (the mCE)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from beyond_inet.datasets.base import (
    APPLY_TEMPERATURE,
    DatasetSpec,
    Layout,
    Protocol,
    Sample,
    download_hint,
    subdirs,
    wnid_folder_samples,
)
from beyond_inet.reference import alexnet_imagenet_c_errors

IMAGENET_C_VIEW = re.compile(r"^(?P<corruption>[a-z_]+):(?P<severity>[1-5])$")


def find_imagenet_c(root: Path) -> list[Sample]:
    """ImageNet-C: ``<corruption>/<severity 1..5>/<wnid>/*``; group ``<corruption>:<severity>``.

    Every corruption folder found is used (the 15 benchmark corruptions and the 4 extra
    ones); only the 15 with AlexNet baselines enter ``top1`` and the mCE.
    """
    out = []
    for c in subdirs(root):
        if not re.fullmatch(r"[a-z_]+", c.name):
            continue
        for s in subdirs(c):
            if s.name in {"1", "2", "3", "4", "5"}:
                out += wnid_folder_samples(root, s, None, "imagenet-c", f"{c.name}:{s.name}")
    return out


def parse_imagenet_c_view(view: str) -> tuple[str, int] | None:
    """``'fog:3'`` -> ``('fog', 3)``; ``None`` for other view names."""
    m = IMAGENET_C_VIEW.match(view)
    return (m["corruption"], int(m["severity"])) if m else None


def corruption_errors(errors: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c} for every corruption with an AlexNet
    baseline, over the severities present for it (all five on the full benchmark)."""
    base = alexnet_imagenet_c_errors()
    out = {}
    for c, by_sev in errors.items():
        if c in base and by_sev:
            out[c] = sum(by_sev.values()) / sum(base[c][s] for s in by_sev)
    return out


def mean_corruption_error(ce: Mapping[str, float]) -> float:
    """mCE: the mean of the corruption errors (NaN when there are none)."""
    return sum(ce.values()) / len(ce) if ce else math.nan


IMAGENET_C = DatasetSpec(
    name="imagenet-c",
    description="ImageNet-C (15 corruptions x 5 severities x 50,000 images)",
    layout=Layout(
        "imagenet-c", "imagenet-c/<corruption>/<severity 1..5>/<wnid>/*.JPEG", find_imagenet_c
    ),
    how_to_get=download_hint("imagenet-c") + "blur, digital, noise and weather "
    ".tar from zenodo.org/record/2235448, extracted into one folder.",
    protocol=Protocol(
        evaluations=("accuracy", "calibration"),
        run_evaluations=("imagenet_c",),
        roles=APPLY_TEMPERATURE,
    ),
)
