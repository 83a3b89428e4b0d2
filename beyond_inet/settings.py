"""Defaults and environment variables, read in one place (stdlib only: cheap to import).

Every other module takes these as typed arguments; the CLI and the dashboard read them here.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The logit scale the paper applies to CLIP cosine similarities (CLIP's own, exp(4.6052)).
DEFAULT_LOGIT_SCALE = 100.0
#: Precision of a model's trunk (the head always runs in fp32).
PRECISIONS = ("fp32", "bf16")
#: How images are decoded (``--decode``): ``pil`` in the CPU workers (the reference), or
#: ``device``: JPEGs in batches on the run's device (nvJPEG on CUDA, libjpeg-turbo through
#: torchvision on the CPU), every other file by PIL in the workers.
DECODERS = ("pil", "device")
#: How tokens of a transformer layer tap are pooled: mean over patch tokens, or the class token.
TOKEN_POOLS = ("mean", "cls")
#: Seed of random initialisation (``--random-weights``) and of random heads.
RANDOM_SEED = 0
#: Batch size on the CPU; on a GPU :data:`DEFAULT_GPU_BATCH_SIZE` fills it on 224 px views
#: (a batch that runs out of GPU memory is split in halves, never lost).
DEFAULT_BATCH_SIZE = 64
DEFAULT_GPU_BATCH_SIZE = 256
DEFAULT_BOOTSTRAP = 1000
#: How stored numbers are scored, recorded with every run (``settings.scoring``): bumped when
#: a change adds metrics or changes intervals, so that a skipped older run says what it
#: lacks. Version -> what it added (runs without the field predate version 2).
SCORING_VERSION = 2
SCORING_CHANGES: dict[int, str] = {
    1: "temperature-scaled calibration (*_ts) if it was stored before schema 4",
    2: "the debiased RMS calibration error (rmsce) and BCa intervals; ECE / MCE without one",
}
#: Images of a CKA estimate (``--cka-images``), drawn with a fixed seed.
DEFAULT_CKA_IMAGES = 2000
DEFAULT_DATA_ROOT = Path("data") / "datasets"
DEFAULT_STORE = Path("data") / "results.duckdb"
#: How long a reader or writer waits for the other side's DuckDB lock before reporting it.
LOCK_WAIT_SECONDS = 30.0
#: The dashboard's readers wait less: a page should say "busy" rather than hang.
DASHBOARD_LOCK_WAIT_SECONDS = 10.0

#: How long a rank waits for the others at a collective (rank 0 may be scoring / committing).
DIST_TIMEOUT_SECONDS = float(os.environ.get("BEYOND_INET_DIST_TIMEOUT", "1800"))

STORE_ENV = "BEYOND_INET_STORE"
#: The default of ``--device`` (``auto``, ``cpu``, ``cuda``); the test suite sets ``cpu`` so
#: that its CPU oracles compare like with like, and its CUDA tests ask for ``cuda``.
DEVICE_ENV = "BEYOND_INET_DEVICE"
DATA_ROOT_ENV = "BEYOND_INET_DATA_ROOT"
CACHE_ENV = "BEYOND_INET_CACHE"
DOWNLOADS_ENV = "BEYOND_INET_DOWNLOADS"
LIVE_MODELS_ENV = "BEYOND_INET_LIVE_MODELS"
MAX_UPLOAD_MB_ENV = "BEYOND_INET_MAX_UPLOAD_MB"
MAX_PIXELS_ENV = "BEYOND_INET_MAX_PIXELS"


def default_workers() -> int:
    """Decode workers: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def default_device() -> str:
    """``--device``'s default: ``$BEYOND_INET_DEVICE`` or ``auto``."""
    return os.environ.get(DEVICE_ENV, "").strip() or "auto"


def default_batch_size(device: str) -> int:
    """:data:`DEFAULT_GPU_BATCH_SIZE` on a GPU, else :data:`DEFAULT_BATCH_SIZE`."""
    return DEFAULT_GPU_BATCH_SIZE if device.startswith("cuda") else DEFAULT_BATCH_SIZE


def cache_dir() -> Path:
    """Where zero-shot heads are cached: ``$BEYOND_INET_CACHE`` or ``~/.cache/beyond_inet``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env) if env else Path.home() / ".cache" / "beyond_inet"


def env_data_roots() -> list[Path]:
    """``$BEYOND_INET_DATA_ROOT`` split on the path separator (``:``); [] when unset."""
    raw = os.environ.get(DATA_ROOT_ENV, "").strip()
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def dist_env() -> tuple[int, int, int] | None:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them; ``None`` outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def env_store() -> Path | None:
    """``$BEYOND_INET_STORE`` when set and non-empty."""
    raw = os.environ.get(STORE_ENV, "").strip()
    return Path(raw) if raw else None
