"""``precompute`` on a GPU against what the hardware allows, in one command.

    python benchmarks/bench_gpu.py --json gpu.json          # one GPU: ~6 minutes
    python benchmarks/bench_gpu.py --device cpu             # CI-sized: tiny model, ~1 minute

1. Generates an ImageNet-val layout (1000 wnid folders, 500x375-like JPEGs) and an
   ImageNet-C-like set (15 corruptions x 5 severities = 75 views of the same images, hard
   links).
2. Measures the bounds: the model alone (trunk + head on device-resident random batches at
   each input size), PIL decoding in the decode workers, and batched nvJPEG decoding.
3. Runs ``python -m precompute`` end to end (random weights, ``--bootstrap 1000``): the
   standard view; standard + the 15 invariance views; the paper's four models in one pass;
   the ImageNet-C-like set. Each pass time (decode + transforms + forward, what the engine
   measures) is printed beside its bound — the sum over views and models of images / the
   model-alone rate at that view's size — with the ratio, and so is the wall time of the
   whole command (loading, scoring and the commit included).
4. Extrapolates the whole paper suite for the four models, ImageNet-C included.

``--device cpu`` runs the same steps with timm's ``test_vit`` on a few hundred small images.
Reports only; never fails on numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from beyond_inet.datasets.decode import DecodeWorkers, decode_on_device, read_encoded
from beyond_inet.models import PAPER_MODELS, LoadOptions, WeightsSource, load_model
from beyond_inet.models.contract import logits_of
from beyond_inet.reference import alexnet_imagenet_c_errors, imagenet_wnids
from beyond_inet.settings import default_workers
from beyond_inet.transforms.views import VIEW_GRIDS, grid_views, parse_view
from precompute.cli import main as precompute

PAPER = PAPER_MODELS
CORRUPTIONS = 15
SEVERITIES = 5
#: Images of the paper's suite besides ImageNet val (50,000 x 16 views) and ImageNet-C
#: (75 views of 50,000): V2, Sketch, R, A, Hard, PUG-ImageNet.
SUITE_OTHER_IMAGES = 10_000 + 50_889 + 30_000 + 7_500 + 10_980 + 88_328


def _write(args: tuple[int, str, int]) -> None:
    from PIL import Image

    i, path, seed = args
    rng = np.random.default_rng(seed + i)
    h, w = (375, 500) if i % 3 else (500, 375)
    small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.BILINEAR).save(path, quality=90)


def generate(root: Path, n: int, c_images: int) -> tuple[Path, Path]:
    """``imagenet/val/<wnid>/*.JPEG`` (n images) and ``imagenet-c/<c>/<s>/<wnid>/*.JPEG``
    (c_images images per view, hard links to the first val images)."""
    wnids = imagenet_wnids()
    val = root / "imagenet" / "val"
    jobs = []
    for i in range(n):
        folder = val / wnids[i % 1000]
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((i, str(folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"), 0))
    with mp.Pool(default_workers()) as pool:
        pool.map(_write, jobs, chunksize=64)
    c_root = root / "imagenet-c"
    for c in list(alexnet_imagenet_c_errors())[:CORRUPTIONS]:
        for s in range(1, SEVERITIES + 1):
            for i, _, _ in jobs[:c_images]:
                src = Path(jobs[i][1])
                dst = c_root / c / str(s) / src.parent.name / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
    return val, c_root


def model_rate(name: str, size: int, device: str, precision: str, batch: int) -> float:
    """Images/s of the model alone (trunk + fp32 head) at ``size`` px on resident batches."""
    model = load_model(name, LoadOptions(weights=WeightsSource("random")))
    module = model.module.to(device).eval()
    if device == "cuda":
        module = module.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device)
    if device == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    reps = 3 if device == "cpu" else 10
    with torch.inference_mode():
        logits_of(module, x, precision)
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            logits_of(module, x, precision)
        _sync(device)
    return batch * reps / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def decode_rates(val: Path, device: str, batch: int) -> dict[str, float]:
    """Images/s of PIL decoding in the decode workers, and of batched device decoding."""
    files = sorted(val.rglob("*.JPEG"))[: 4 * batch * max(1, default_workers())]
    keys = [(i, str(f)) for i, f in enumerate(files)]
    out = {}
    with DecodeWorkers(default_workers(), batch, device == "cuda", "pil") as dec:
        start = time.perf_counter()
        for _ in dec.batches(keys):
            pass
        out["pil_workers"] = len(keys) / (time.perf_counter() - start)
    data = [read_encoded(str(f)) for f in files]
    decode_on_device(data[:batch], device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for k in range(0, len(data), batch):
        decode_on_device(data[k : k + batch], device)
    _sync(device)
    out["device_batched"] = len(data) / (time.perf_counter() - start)
    return out


def run(args: list[str], store: Path) -> tuple[float, float]:
    """(pass seconds summed over the command's runs, wall seconds) of one precompute."""
    from beyond_inet.store import Store

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # precompute's own summary table
        code = precompute([*args, "--store", str(store), "--quiet", "--random-weights"])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"precompute {' '.join(args)} exited {code}")
    runs = Store(store).query("SELECT dataset, seconds FROM runs")
    # the models of one pass share it: each run records the pass time
    passes = runs.groupby("dataset")["seconds"].max().sum()
    return float(passes), wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, help="val images (default 10,000 GPU / 256 CPU)")
    ap.add_argument("--c-images", type=int, help="images per ImageNet-C view (2,000 / 16)")
    ap.add_argument("--precision", help="default bf16 on a GPU, fp32 on the CPU")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    gpu = args.device == "cuda"
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    n = args.images or (10_000 if gpu else 128)
    n_c = args.c_images or (2_000 if gpu else 16)
    model = "deit3_21k" if gpu else "timm:test_vit"
    paper = PAPER if gpu else ("timm:test_vit", "open_clip:test-tiny-clip")
    batch = 256 if gpu else 64
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "cpus": default_workers(),
        "torch": torch.__version__,
        "precision": args.precision,
        "images": n,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        val, _ = generate(root, n, n_c)
        result["generate_s"] = round(time.perf_counter() - t0, 1)
        pp = load_model(model, LoadOptions(weights=WeightsSource("random"))).preprocessing
        sizes = {v: parse_view(v).input_size(pp) for v in ("standard", *grid_views(VIEW_GRIDS))}
        rates = {
            s: model_rate(model, s, args.device, args.precision, batch) for s in set(sizes.values())
        }
        native = 224 if gpu else 160
        paper_rates = {m: model_rate(m, native, args.device, args.precision, batch) for m in paper}
        result["model_rate_img_s"] = {str(k): round(v, 1) for k, v in rates.items()}
        result["paper_model_rate_img_s"] = {k: round(v, 1) for k, v in paper_rates.items()}
        decode = decode_rates(val, args.device, batch)
        result["decode_img_s"] = {k: round(v, 1) for k, v in decode.items()}
        common = ["--data-root", str(root), "--device", args.device, "--precision", args.precision]
        decode_rate = max(decode.values()) if gpu else decode["pil_workers"]
        c_images = CORRUPTIONS * SEVERITIES * n_c
        cases = {  # name: (arguments, model-alone bound, images decoded)
            "standard": (
                ["--model", model, "--dataset", "imagenet-val", "--no-invariance"],
                n / rates[sizes["standard"]],
                n,
            ),
            "standard+15 views": (
                ["--model", model, "--dataset", "imagenet-val"],
                sum(n / rates[s] for s in sizes.values()),
                n,
            ),
            "paper models, one pass": (
                ["--model", ",".join(paper), "--dataset", "imagenet-val", "--no-invariance"],
                sum(n / r for r in paper_rates.values()),
                n,
            ),
            "imagenet-c-like, 75 views": (
                ["--model", model, "--dataset", "imagenet-c"],
                c_images / rates[sizes["standard"]],
                c_images,
            ),
        }
        table = {}
        print(f"{'':28s} {'pass':>8s} {'model':>8s} {'decode':>8s}  ratio to the larger bound")
        for k, (name, (cmd, model_bound, decoded)) in enumerate(cases.items()):
            seconds, wall = run([*cmd, *common], root / f"store{k}.duckdb")
            decode_bound = decoded / decode_rate
            bound = max(model_bound, decode_bound)
            table[name] = {
                "pass_s": round(seconds, 2),
                "wall_s": round(wall, 2),
                "model_bound_s": round(model_bound, 2),
                "decode_bound_s": round(decode_bound, 2),
                "ratio_to_model_bound": round(seconds / model_bound, 2),
                "ratio_to_bound": round(seconds / bound, 2),
            }
            print(
                f"{name:28s} {seconds:7.2f}s {model_bound:7.2f}s {decode_bound:7.2f}s  "
                f"{seconds / bound:5.2f}  (model alone: {seconds / model_bound:.2f}; "
                f"wall {wall:.1f} s)"
            )
        result["runs"] = table
        # The paper suite for the four models from the one-pass rate (per image, 224 px views)
        per_image = table["paper models, one pass"]["pass_s"] / n
        suite_images = 50_000 * 16 + 75 * 50_000 + SUITE_OTHER_IMAGES
        result["paper_suite_extrapolated_min"] = round(per_image * suite_images / 60, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
