"""What transfer and CKA runs cost: feature extraction images/s, probe seconds per task, CKA.

    python benchmarks/bench_transfer.py                         # CPU, ~3 minutes on 2 cores
    python benchmarks/bench_transfer.py --model timm:vit_base_patch16_224 --device cuda

Feature extraction runs the real engine (``run_pass``, channel ``features``) on generated
224 px pictures with random weights (the speed does not depend on the weights): the tiny
``timm:test_vit`` and a ViT-B/16 (the paper's DeiT3-B size). The probe is the production
``fit_probe`` (scikit-learn L-BFGS to convergence over the 13 + 6 values of C, then the
refit) on random 768-d features of VTAB-1k's size (800 + 200, 10 and 100 classes) and of a
``full`` training set. CKA is the production minibatch estimator on ViT-B's 12 block taps
with itself. Reports only; never fails on numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beyond_inet.datasets import DATASETS, discover
from beyond_inet.models import LoadOptions, WeightsSource, load_model
from beyond_inet.run.engine import FEATURES, TAPS, RunSettings, resolve_device, run_pass
from beyond_inet.scoring.cka import MinibatchCKA
from beyond_inet.scoring.probe import fit_probe
from tests.conftest import write_flat_val


def _features_rate(name: str, found, settings: RunSettings) -> float:  # type: ignore[no-untyped-def]
    model = load_model(name, LoadOptions(weights=WeightsSource("random")))
    run_pass(found, [model], settings, channels=(FEATURES,))  # warm-up
    res = run_pass(found, [model], settings, channels=(FEATURES,))
    return res.n_images / res.seconds


def _probe_seconds(n_train: int, n_val: int, n_test: int, classes: int, dim: int = 768) -> float:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, dim))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        return centres[y] + 3.0 * rng.normal(size=(n, dim)), y

    (xt, yt), (xv, yv), (xs, _) = draw(n_train), draw(n_val), draw(n_test)
    return fit_probe((xt, yt), (xv, yv), xs, classes).seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="timm:vit_base_patch16_224", help="the large model")
    p.add_argument("--images", type=int, default=128, help="pictures for feature extraction")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    settings = RunSettings(
        device=resolve_device(args.device), batch_size=args.batch_size, workers=2, progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "val"
        write_flat_val(root, args.images)
        for f in root.iterdir():  # VTAB-like 224 px pictures
            Image.open(f).convert("RGB").resize((224, 224)).save(f)
        found = discover(DATASETS.get("imagenet-val"), root)
        assert found is not None
        print(f"feature extraction ({args.images} images, {settings.device}, fp32):")
        for name in ("timm:test_vit", args.model):
            print(f"  {name:<28} {_features_rate(name, found, settings):7.1f} images/s")

        print("linear probe (fit_probe: 19 converged C values on val, then refit on train+val):")
        for label, sizes in (
            ("VTAB-1k, 10 classes", (800, 200, 2000, 10)),
            ("VTAB-1k, 100 classes", (800, 200, 10000, 100)),
            ("full, 10,000 train, 100 classes", (9000, 1000, 10000, 100)),
        ):
            print(f"  {label:<34} {_probe_seconds(*sizes):7.1f} s")

        model = load_model(args.model, LoadOptions(weights=WeightsSource("random")))
        taps = list(model.module.tap_points())
        acc = MinibatchCKA(len(taps), len(taps))

        def sink(_m: str, _i: np.ndarray, t: dict[str, np.ndarray]) -> None:
            xs = [t[n] for n in taps]
            if len(xs[0]) >= 4:
                acc.update(xs, xs)

        start = time.perf_counter()
        run_pass(found, [model], settings, channels=(TAPS,), taps={model.name: taps}, tap_sink=sink)
        secs = time.perf_counter() - start
        print(
            f"CKA {args.model} with itself: {len(taps)} x {len(taps)} taps, {acc.images} "
            f"images in {secs:.1f} s ({acc.images / secs:.1f} images/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
