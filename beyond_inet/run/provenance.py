"""Which code, model and settings made a run: the code version and the run record."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import beyond_inet
from beyond_inet.datasets import FoundDataset
from beyond_inet.datasets.base import LIMIT_SAMPLING, LIMIT_SEED
from beyond_inet.models import LoadedModel
from beyond_inet.records import (
    RunRecord,
)
from beyond_inet.run.engine import (
    PassResult,
    device_name,
)
from beyond_inet.run.plan import (
    InDistribution,
    PrecomputeConfig,
    library_versions,
)
from beyond_inet.settings import SCORING_VERSION
from beyond_inet.transforms.views import View


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(beyond_inet.__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return beyond_inet.__version__ + (f"+{sha}" if sha else "")


def utc_now() -> datetime:
    """Now in UTC, naive (as the store's TIMESTAMP columns hold it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def run_record(
    cfg: PrecomputeConfig,
    found: FoundDataset,
    model: LoadedModel,
    views: Sequence[View],
    result: PassResult,
    started: datetime,
    key: str,
    run_id: str,
    temperature_scaling: dict[str, Any] | None = None,
    in_distribution: InDistribution | None = None,
) -> RunRecord:
    """The run's provenance record (its settings: the model's, and how it was
    temperature-scaled, if it was)."""
    settings = dict(model.settings)
    settings["run"] = cfg.run.identity()  # device name, batch size, compile, TF32, decoder
    settings["scoring"] = SCORING_VERSION
    if cfg.limit:
        settings["limit"] = {"images": cfg.limit, "sampling": LIMIT_SAMPLING, "seed": LIMIT_SEED}
    if temperature_scaling:
        settings["temperature_scaling"] = temperature_scaling
    if in_distribution is not None:
        settings["ood"] = {
            "in_distribution_run": in_distribution.run_id,
            "in_distribution_images": in_distribution.n_images,
            "scores": sorted(in_distribution.scores),
        }
    return RunRecord(
        run_id=run_id,
        run_key=key,
        dataset=found.spec.name,
        status="finished",
        views=json.dumps([v.name for v in views]),
        settings=json.dumps(settings),
        dataset_root=str(found.root.resolve()),
        sample_limit=cfg.limit,
        n_samples=result.n_images - len(result.failed),
        n_failed=len(result.failed),
        failed=json.dumps([{"sample_id": s, "error": e} for s, e in result.failed]),
        started_at=started,
        finished_at=utc_now(),
        seconds=result.seconds,
        **model_provenance(cfg, model),
    )


def model_provenance(cfg: PrecomputeConfig, model: LoadedModel) -> dict[str, Any]:
    """The run-record fields that say which model, weights and code made a run."""
    return {
        "model": model.name,
        "model_label": model.spec.display,
        "weights": model.weights,
        "random_weights": model.is_random,
        "preprocessing": model.preprocessing.to_json(),
        "device": device_name(cfg.run.device),
        "precision": cfg.run.precision,
        "code_version": code_version(),
        "library_versions": json.dumps(library_versions((model.spec.family,)), sort_keys=True),
    }
