"""Shared fixtures: synthetic datasets in the real on-disk layouts, tiny models built once."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beyond_inet.models import LoadedModel, LoadOptions, WeightsSource, load_model
from beyond_inet.records import RUN_COLUMNS, CkaRunRecord, RunRecord
from beyond_inet.scoring.metrics import load_imagenet_x_annotations

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINY_TIMM = "timm:test_vit"
TINY_CLIP = "open_clip:test-tiny-clip"

# Never touch the network from tests: any hub lookup must fail fast and locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# precompute runs on the CPU unless a test asks for CUDA (tests/test_cuda.py): the CPU
# oracles of the other tests compare like with like, also on a GPU machine.
os.environ.setdefault("BEYOND_INET_DEVICE", "cpu")


def run_record(run_id: str, **values: object) -> RunRecord:
    """A finished run record for store tests: every column None except the required ones
    (defaults below, overridden by ``values``)."""
    row: dict[str, object] = {c: None for c, _ in RUN_COLUMNS}
    row.update(
        run_id=run_id,
        run_key=f"key-{run_id}",
        model="m",
        dataset="imagenet-val",
        status="finished",
        weights="random",
        random_weights=True,
        preprocessing="{}",
        views='["standard"]',
        n_samples=0,
        n_failed=0,
    )
    row.update(values)
    return RunRecord(**row)


def cka_record(run_id: str, key: str, **values: object) -> CkaRunRecord:
    """A CKA run record with plausible defaults (``values`` override fields)."""
    base: dict[str, object] = {
        "run_id": run_id,
        "run_key": key,
        "model_a": "a",
        "model_b": "b",
        "dataset": "imagenet-val",
        "n_images": 8,
        "tokens": "mean",
        "layers_a": '["x", "y"]',
        "layers_b": '["x", "y"]',
        "weights_a": "random",
        "weights_b": "random",
        "random_weights": True,
        "preprocessing_a": "{}",
        "preprocessing_b": "{}",
        "dataset_root": None,
        "estimator": "test",
        "batch_size": 4,
        "started_at": None,
        "finished_at": None,
        "seconds": 0.0,
        "device": "cpu",
        "precision": "fp32",
        "code_version": "test",
        "library_versions": "{}",
    }
    return CkaRunRecord(**{**base, **values})  # type: ignore[arg-type]


def noise_image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A random RGB image (smooth enough to be a plausible JPEG)."""
    small = rng.integers(0, 255, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


BIASED_CLASS = 0  # a third of the synthetic val images have this label (see write_flat_val)


def annotated_val_names(n: int) -> list[str]:
    """``n`` real ImageNet val file names with ImageNet-X annotations; a third of them
    (rounded up) are of class :data:`BIASED_CLASS`, so a biased model gets those right."""
    ann = load_imagenet_x_annotations()
    same = ann[ann["class"] == BIASED_CLASS]["file_name"].head((n + 2) // 3).tolist()
    rest = ann[ann["class"] != BIASED_CLASS]["file_name"].head(n - len(same)).tolist()
    return sorted(same + rest)


def write_flat_val(root: Path, n: int, seed: int = 0) -> list[str]:
    """Flat ``ILSVRC2012_val_*.JPEG`` layout with real (annotated) file names."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = annotated_val_names(n)
    for name in names:
        h, w = (int(x) for x in rng.integers(96, 320, 2))
        noise_image(rng, h, w).save(root / name, format="JPEG", quality=90)
    return names


def write_corrupt_files(root: Path) -> list[str]:
    """A text file named .JPEG and a truncated JPEG, with valid val names."""
    (root / "ILSVRC2012_val_00000001.JPEG").write_text("this is not an image")
    buf = io.BytesIO()
    noise_image(np.random.default_rng(9), 200, 200).save(buf, format="JPEG")
    (root / "ILSVRC2012_val_00000002.JPEG").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    return ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]


def write_cue_conflict(root: Path, pairs: list[tuple[str, str]], seed: int = 1) -> list[str]:
    """``<shape>/<shape><i>-<texture><j>.png`` stimuli (224x224 like the real ones)."""
    rng = np.random.default_rng(seed)
    ids = []
    for i, (shape, texture) in enumerate(pairs):
        (root / shape).mkdir(parents=True, exist_ok=True)
        name = f"{shape}{i + 1}-{texture}{i + 2}.png"
        noise_image(rng, 224, 224).save(root / shape / name)
        ids.append(f"{shape}/{name}")
    return ids


CUE_PAIRS = [
    ("cat", "dog"),
    ("dog", "cat"),
    ("car", "clock"),
    ("cat", "cat"),
    ("bear", "knife"),
    ("oven", "truck"),
]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root with imagenet/val (12 good + 2 corrupt) and cue-conflict (6)."""
    root = tmp_path_factory.mktemp("datasets")
    write_flat_val(root / "imagenet" / "val", 12)
    write_corrupt_files(root / "imagenet" / "val")
    write_cue_conflict(root / "cue-conflict", CUE_PAIRS)
    return root


@pytest.fixture(scope="session")
def tiny_timm() -> LoadedModel:
    """timm's test_vit with seeded random weights (built once per session)."""
    return load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random")))


@pytest.fixture(scope="session")
def tiny_clip() -> LoadedModel:
    """The bundled tiny open_clip config as a zero-shot classifier (random weights)."""
    return load_model(TINY_CLIP, LoadOptions(weights=WeightsSource("random")))


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained ``test_vit`` (tests/trained.py) as a safetensors checkpoint, built once."""
    from tests.trained import save_trained_checkpoint

    return save_trained_checkpoint(tmp_path_factory.mktemp("trained") / "test_vit.safetensors")


@pytest.fixture(scope="session")
def trained_val_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root whose imagenet/val holds wnid folders of the trained model's classes."""
    from tests.trained import write_class_folders

    root = tmp_path_factory.mktemp("trained_data")
    write_class_folders(root / "imagenet" / "val", per_class=6)
    return root
