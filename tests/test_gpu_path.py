"""The engine's GPU path: what runs everywhere (batched inputs, the packed copy, the OOM split,
device decoding through torchvision, persistent decode workers, the TF32 policy, the run's
identity) and, where CUDA exists, CPU vs CUDA on the trained fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from beyond_inet.datasets import DATASETS, discover
from beyond_inet.datasets.decode import (
    DecodeWorkers,
    decode_on_device,
    load_rgb,
    pil_to_tensor,
)
from beyond_inet.models import LoadOptions, WeightsSource, load_model
from beyond_inet.run import engine
from beyond_inet.run.engine import RunSettings, run_pass
from beyond_inet.store import Store
from beyond_inet.transforms.preprocess import standard_transform
from beyond_inet.transforms.views import parse_view
from precompute.cli import main
from tests.conftest import TINY_TIMM, noise_image

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (runs on the GPU machine)")
DEVICES = ["cpu", *(["cuda"] if CUDA else [])]


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_is_built_per_size_and_equals_each_image_alone(device: str) -> None:
    rng = np.random.default_rng(0)
    images = [pil_to_tensor(noise_image(rng, h, w)) for h, w in [(90, 120)] * 3 + [(130, 97)]]
    model = load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random")))
    pp = model.preprocessing
    dev = [img.to(device) for img in images]
    order = sorted(range(len(dev)), key=lambda i: tuple(dev[i].shape))
    inputs = engine._Inputs([dev[i] for i in order], channels_last=False)
    assert len(inputs.groups) == 2  # one resize call per source size
    for view in ("standard", "scale:1.5", "shift:30", "resolution:112"):
        v = parse_view(view)
        batch = inputs.get(v, pp)
        alone = torch.stack([v.transform(dev[i], pp) for i in order])
        torch.testing.assert_close(batch, alone, rtol=0, atol=1e-6)
        assert inputs.get(v, pp) is batch  # built once, shared by models of this recipe


def test_a_batch_that_runs_out_of_gpu_memory_is_split_not_lost() -> None:
    calls: list[int] = []

    def compute(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"sum": x.sum(dim=1), "label": y}

    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    out = engine._split_on_oom(compute, x, y)
    torch.testing.assert_close(out["sum"], x.sum(dim=1))
    assert out["label"].tolist() == list(range(10))
    assert max(c for c in calls if c <= 3) <= 3 and calls[0] == 10


def test_the_packed_copy_keeps_every_dtype_and_value() -> None:
    parts = [
        (
            ("m", "standard"),
            {
                "pred": torch.tensor([999, 3]),
                "confidence": torch.tensor([0.123456789, 1.0], dtype=torch.float32),
                "p_true": torch.tensor([float("nan"), 0.5]),
                "topk_idx": torch.tensor([[999, 1, 2, 3, 4], [3, 0, 1, 2, 5]]),
                "brier": torch.tensor([0.1, 2.0 / 3.0], dtype=torch.float64),
                "tap:blocks.0": torch.tensor([[1.5, -2.0], [0.0, 3.25]]),
            },
        ),
        (("m", "scale:2"), {"pred": torch.tensor([7, 8])}),
    ]
    pending = engine._Pending(np.array([4, 9]), parts)
    sinks, seen = engine._Sinks(), []
    pending.resolve(sinks, lambda model, index, taps: seen.append((model, index, taps)))
    got = sinks.per_image[("m", "standard")].joined()
    assert got["pred"].dtype == np.int64 and got["pred"].tolist() == [999, 3]
    assert got["confidence"].dtype == np.float32
    assert np.array_equal(got["confidence"], parts[0][1]["confidence"].numpy())
    assert np.isnan(got["p_true"][0]) and got["p_true"][1] == 0.5
    assert got["topk_idx"].shape == (2, 5) and got["brier"][1] == 2.0 / 3.0
    assert seen[0][0] == "m" and np.array_equal(seen[0][2]["blocks.0"], [[1.5, -2.0], [0, 3.25]])
    assert sinks.per_image[("m", "scale:2")].joined()["pred"].tolist() == [7, 8]


def test_top1_ties_go_to_the_lowest_class_index() -> None:
    logits = torch.zeros(3, 10)
    logits[0, [7, 2]] = 5.0
    logits[1, [9, 4, 6]] = 1.0
    out = engine.score_logits(logits, torch.tensor([2, 4, -1]), None)
    assert out["pred"].tolist() == [2, 4, 0]
    assert out["topk_idx"][1].tolist()[:3] == [4, 6, 9]


# --------------------------------------------------------------------------- decoding


def _jpegs(root: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (h, w) in enumerate([(120, 160), (160, 120), (120, 160), (77, 93)]):
        p = root / f"img{k}.JPEG"
        noise_image(rng, h, w).save(p, quality=90)
        paths.append(p)
    gray = root / "gray.JPEG"
    noise_image(rng, 64, 80).convert("L").save(gray, quality=90)
    cmyk = root / "cmyk.JPEG"
    noise_image(rng, 64, 80).convert("CMYK").save(cmyk, quality=90)
    png = root / "png_named.JPEG"  # ImageNet has a PNG named .JPEG
    noise_image(rng, 50, 60).save(png, format="PNG")
    exif = root / "rotated.JPEG"
    im = noise_image(rng, 60, 90)
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(exif, quality=90, exif=ex.tobytes())
    return [*paths, gray, cmyk, png, exif]


@pytest.mark.parametrize("device", DEVICES)
def test_device_decoding_matches_pil(tmp_path: Path, device: str) -> None:
    paths = _jpegs(tmp_path)
    keys = [(i, str(p)) for i, p in enumerate(paths)]
    with DecodeWorkers(0, 16, False, "device") as dec:
        (batch,) = list(dec.batches(keys))
    encoded = [d for d in batch if d.encoded is not None]
    assert {Path(keys[d.index][1]).name for d in batch if d.image is not None} == {
        "cmyk.JPEG",
        "png_named.JPEG",
    }  # what torchvision would decode differently stays with PIL
    decoded = decode_on_device([d.encoded for d in encoded], device)  # type: ignore[misc]
    worst = 0.0
    for d, img in zip(encoded, decoded, strict=True):
        assert not isinstance(img, str)
        ref = pil_to_tensor(load_rgb(keys[d.index][1]))
        assert img.device.type == device and tuple(img.shape) == tuple(ref.shape)
        diff = (img.cpu().float() - ref.float()).abs()
        worst = max(worst, float(diff.mean()))
        assert float(diff.mean()) <= 1.0, keys[d.index][1]
    if device == "cpu":  # torchvision's libjpeg-turbo decodes as Pillow's does
        assert worst == 0.0
    assert decode_on_device([torch.zeros(10, dtype=torch.uint8)], device)[0].startswith("Runtime")


def test_a_device_decoded_pass_equals_a_pil_pass(tmp_path: Path) -> None:
    from tests.trained import write_class_folders

    write_class_folders(tmp_path / "val", per_class=4, seed=5)
    found = discover(DATASETS.get("imagenet-val"), tmp_path / "val")
    assert found is not None
    model = load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random")))
    out = {}
    for decode in ("pil", "device"):
        s = RunSettings(batch_size=8, workers=0, progress=False, decode=decode)
        out[decode] = run_pass(found, [model], s).outputs[(model.name, "standard")]
    assert np.array_equal(out["pil"].index, out["device"].index)
    assert np.array_equal(out["pil"].pred, out["device"].pred)
    np.testing.assert_allclose(out["pil"].p_true, out["device"].p_true, atol=1e-6)


def test_decode_workers_persist_across_passes(tmp_path: Path) -> None:
    paths = _jpegs(tmp_path)
    with DecodeWorkers(2, 3, False, "pil") as dec:
        first = [
            d.index for b in dec.batches([(i, str(p)) for i, p in enumerate(paths)]) for d in b
        ]
        workers = [w.pid for w in dec._loader._iterator._workers]  # type: ignore[union-attr]
        again = [(7, str(paths[0])), (3, str(paths[1]))]
        second = [d.index for b in dec.batches(again) for d in b]
        assert [w.pid for w in dec._loader._iterator._workers] == workers  # type: ignore[union-attr]
    assert first == list(range(len(paths))) and second == [7, 3]


# --------------------------------------------------------------------------- policy and identity


def test_tf32_is_off_unless_asked_for(data_root: Path) -> None:
    found = discover(DATASETS.get("cue-conflict"), data_root / "cue-conflict")
    assert found is not None
    model = load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random")))
    run_pass(found, [model], RunSettings(workers=0, progress=False, tf32=True))
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    run_pass(found, [model], RunSettings(workers=0, progress=False))
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_runs_record_how_they_ran_and_differ_by_it(data_root: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "r.duckdb")
    base = [
        "--model",
        TINY_TIMM,
        "--random-weights",
        "--data-root",
        str(data_root),
        "--dataset",
        "cue-conflict",
        "--store",
        str(store.path),
        "--workers",
        "0",
        "--bootstrap",
        "0",
        "--quiet",
    ]
    assert main(base) == 0
    run = store.query("SELECT * FROM runs").iloc[0]
    assert run["device"] == "cpu"
    recorded = json.loads(run["settings"])["run"]
    assert recorded == {
        "device": "cpu",
        "precision": "fp32",
        "tf32": False,
        "decode": "pil",
        "batch_size": 64,
        "compile": False,
    }
    assert json.loads(run["library_versions"])["torch"] == torch.__version__
    assert main(base) == 0  # the same run: skipped
    assert len(store.query("SELECT run_id FROM runs")) == 1
    for extra in (["--decode", "device"], ["--batch-size", "8"]):
        assert main([*base, *extra]) == 0  # numbers could differ: not skipped
    runs = store.query("SELECT run_key, settings FROM runs")
    assert runs["run_key"].nunique() == 3


def test_a_bad_device_setting_is_a_one_line_error(
    data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEYOND_INET_DEVICE", "gpu")
    from precompute import cli

    args = cli.build_parser().parse_args(["--model", TINY_TIMM])
    with pytest.raises(cli.UsageError, match="BEYOND_INET_DEVICE"):
        cli.config_from_args(args)


# --------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cpu_and_cuda_store_the_same_predictions(
    trained_checkpoint: Path, trained_val_root: Path, tmp_path: Path
) -> None:
    preds = {}
    for device in ("cpu", "cuda"):
        store = Store(tmp_path / f"{device}.duckdb")
        args = [
            "--model",
            TINY_TIMM,
            "--checkpoint",
            str(trained_checkpoint),
            "--data-root",
            str(trained_val_root),
            "--dataset",
            "imagenet-val",
            "--store",
            str(store.path),
            "--device",
            device,
            "--workers",
            "0",
            "--bootstrap",
            "0",
            "--quiet",
            "--scales",
            "1.5",
            "--shifts",
            "30",
            "--resolutions",
            "112",
        ]
        assert main(args) == 0
        preds[device] = store.query(
            "SELECT view, sample_id, pred, p_true FROM predictions ORDER BY view, sample_id"
        )
    cpu, gpu = preds["cpu"], preds["cuda"]
    assert cpu[["view", "sample_id"]].equals(gpu[["view", "sample_id"]])
    assert (cpu["pred"] == gpu["pred"]).mean() >= 0.999
    assert float((cpu["p_true"] - gpu["p_true"]).abs().max()) <= 1e-3


@needs_cuda
def test_bf16_on_cuda_keeps_the_head_in_fp32(
    trained_checkpoint: Path, trained_val_root: Path
) -> None:
    found = discover(DATASETS.get("imagenet-val"), trained_val_root / "imagenet" / "val")
    assert found is not None
    model = load_model(
        TINY_TIMM, LoadOptions(weights=WeightsSource("checkpoint", trained_checkpoint))
    )
    out = {}
    for precision in ("fp32", "bf16"):
        s = RunSettings(device="cuda", workers=0, progress=False, precision=precision)
        out[precision] = run_pass(found, [model], s).outputs[(model.name, "standard")]
    assert (out["fp32"].pred == out["bf16"].pred).mean() >= 0.95
    assert out["bf16"].confidence.dtype == np.float32


@needs_cuda
def test_nvjpeg_decoding_agrees_with_pil_on_the_fixture(
    trained_checkpoint: Path, trained_val_root: Path
) -> None:
    found = discover(DATASETS.get("imagenet-val"), trained_val_root / "imagenet" / "val")
    assert found is not None
    model = load_model(
        TINY_TIMM, LoadOptions(weights=WeightsSource("checkpoint", trained_checkpoint))
    )
    out = {}
    for decode in ("pil", "device"):
        s = RunSettings(device="cuda", workers=0, progress=False, decode=decode)
        out[decode] = run_pass(found, [model], s).outputs[(model.name, "standard")]
    assert (out["pil"].pred == out["device"].pred).mean() >= 0.999


def test_standard_transform_takes_float_levels_like_cuda_does() -> None:
    im = noise_image(np.random.default_rng(4), 150, 210)
    img = pil_to_tensor(im)
    pp = load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random"))).preprocessing
    a, b = standard_transform(img, pp), standard_transform(img.float(), pp)
    std = torch.tensor(pp.std).view(3, 1, 1)
    levels = ((a - b) * std * 255).abs()
    # torchvision's uint8 kernels and the two-pass float path are each within a level of PIL
    assert float(levels.max()) <= 2.0 + 1e-3 and float(levels.mean()) <= 0.05
