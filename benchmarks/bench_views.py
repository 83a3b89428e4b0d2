"""Throughput of the invariance view transforms (and optionally a model at each view).

    python benchmarks/bench_views.py                       # CPU, the paper's grids
    python benchmarks/bench_views.py --device cuda --images 256
    python benchmarks/bench_views.py --model timm:test_vit --random-weights

Per view: milliseconds per image for the transform alone (uint8 CHW on the device ->
normalised float input, as the engine builds batches) and, with ``--model``, for the model
forward on batches of that view. Images are synthetic photos of typical ImageNet sizes
(500x375, 375x500, 500x333, 400x400), decoded once, as in the engine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from beyond_inet.datasets.decode import pil_to_tensor
from beyond_inet.models import (
    PAPER_SUPERVISED_PREPROCESSING,
    LoadOptions,
    WeightsSource,
    load_model,
)
from beyond_inet.run.engine import resolve_device
from beyond_inet.transforms.preprocess import Preprocessing
from beyond_inet.transforms.views import STANDARD, VIEW_GRIDS, View, grid_views, parse_view

SIZES = ((500, 375), (375, 500), (500, 333), (400, 400))


def synthetic_images(n: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    """``n`` smooth random RGB images of typical ImageNet sizes as uint8 CHW on ``device``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        out.append(pil_to_tensor(im).to(device))
    return out


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_view(
    view: View,
    images: list[torch.Tensor],
    pp: Preprocessing,
    batch: int,
    device: str,
    module: torch.nn.Module | None,
) -> tuple[float, float]:
    """(transform ms/image, model ms/image or NaN) for one view over ``images``."""
    t_transform = t_model = 0.0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            _sync(device)
            t0 = time.perf_counter()
            x = torch.stack([view.transform(img, pp) for img in chunk])
            _sync(device)
            t1 = time.perf_counter()
            if module is not None:
                module(x)
                _sync(device)
            t2 = time.perf_counter()
            t_transform += t1 - t0
            t_model += t2 - t1
    n = len(images)
    return 1000 * t_transform / n, (1000 * t_model / n) if module is not None else float("nan")


def main() -> None:
    """Run the benchmark and print one line per view."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", help="also time this model's forward (e.g. timm:test_vit)")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--views", help="comma-separated view names (default: the paper's grids)")
    args = p.parse_args()
    device = resolve_device(args.device)
    names = args.views.split(",") if args.views else ["standard", *grid_views(VIEW_GRIDS)]
    views = [STANDARD if n == "standard" else parse_view(n) for n in names]
    module, pp = None, PAPER_SUPERVISED_PREPROCESSING
    if args.model:
        weights = WeightsSource("random" if args.random_weights else "hub")
        model = load_model(args.model, LoadOptions(weights=weights))
        module, pp = model.module.to(device).eval(), model.preprocessing
    images = synthetic_images(args.images, device)
    time_view(views[0], images[: min(4, len(images))], pp, args.batch_size, device, module)
    print(f"device={device} images={len(images)} preprocessing={pp.to_json()}")
    print(f"{'view':<16}{'input':>7}{'transform ms/img':>18}{'model ms/img':>14}")
    total = 0.0
    for v in views:
        t, m = time_view(v, images, pp, args.batch_size, device, module)
        total += t
        print(f"{v.name:<16}{v.input_size(pp):>7}{t:>18.3f}{m:>14.3f}")
    print(f"all {len(views)} views: {total:.2f} ms of transforms per image and model")


if __name__ == "__main__":
    main()
