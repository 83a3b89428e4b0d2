"""fp32 vs bf16: how much do predictions and calibration move, and what does bf16 buy?

    python benchmarks/bench_precision.py                  # 500 images, the trained fixture
    python benchmarks/bench_precision.py --per-class 100 --device cuda

The trained fixture of the tests (``tests/trained.py``: timm's test_vit trained for a few
seconds on generated classes; ~80% top-1, moderate confidences) is evaluated on freshly
generated ImageNet-style folders twice by the real engine (``run_pass``): ``--precision
fp32`` and ``bf16`` (the backbone under bf16 autocast, the head in fp32). It prints top-1
agreement between the two, the top-1 and ECE of each and their difference, the largest
change of the max-softmax confidence, and images/s; on a GPU also fp32 there against fp32 on
the CPU (top-1 agreement, largest change of the true class's probability). Reports only;
never fails on numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beyond_inet.datasets import DATASETS, discover
from beyond_inet.models import LoadOptions, WeightsSource, load_model
from beyond_inet.run.engine import RunSettings, resolve_device, run_pass
from beyond_inet.run.outputs import image_records
from beyond_inet.scoring import metrics as M
from tests.trained import save_trained_checkpoint, write_class_folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=50, help="test images per class (10)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=50)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        ckpt = save_trained_checkpoint(d / "trained.safetensors")
        print(f"trained the fixture in {time.perf_counter() - t0:.1f} s")
        write_class_folders(d / "val", args.per_class, seed=7)
        found = discover(DATASETS.get("imagenet-val"), d / "val")
        assert found is not None
        model = load_model("timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", ckpt)))
        out = {}
        for precision in ("fp32", "bf16"):
            settings = RunSettings(
                device=device,
                batch_size=args.batch_size,
                workers=0,
                progress=False,
                precision=precision,
            )
            run_pass(found, [model], settings)  # warm-up
            res = run_pass(found, [model], settings)
            vp = image_records(found, res.outputs[(model.name, "standard")], None)
            out[precision] = (vp, len(found.samples) / res.seconds)
    (a, speed_a), (b, speed_b) = out["fp32"], out["bf16"]
    ece = {k: M.expected_calibration_error(v.confidence, v.correct) for k, (v, _) in out.items()}
    top1 = {k: float(v.correct.mean()) for k, (v, _) in out.items()}
    print(f"images: {len(a.pred)} on {device}")
    print(f"top-1 agreement fp32 vs bf16: {np.mean(a.pred == b.pred):.4f}")
    print(
        f"top-1: fp32 {top1['fp32']:.4f}, bf16 {top1['bf16']:.4f} "
        f"(difference {top1['bf16'] - top1['fp32']:+.4f})"
    )
    print(
        f"ECE (15 bins): fp32 {ece['fp32']:.4f}, bf16 {ece['bf16']:.4f} "
        f"(difference {ece['bf16'] - ece['fp32']:+.4f})"
    )
    print(
        f"max |confidence change|: {np.abs(a.confidence - b.confidence).max():.4f}; "
        f"mean {np.abs(a.confidence - b.confidence).mean():.5f}"
    )
    print(f"images/s: fp32 {speed_a:.0f}, bf16 {speed_b:.0f}")
    if device != "cpu":  # the same model and images on the CPU: what the device changes
        settings = RunSettings(batch_size=args.batch_size, workers=0, progress=False)
        res = run_pass(found, [model], settings)
        c = image_records(found, res.outputs[(model.name, "standard")], None)
        print(
            f"fp32 {device} vs cpu: top-1 agreement {np.mean(a.pred == c.pred):.4f}, "
            f"max |p_true difference| {np.nanmax(np.abs(a.p_true - c.p_true)):.2e} "
            "(the test asks >= 0.999 and <= 1e-3)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
