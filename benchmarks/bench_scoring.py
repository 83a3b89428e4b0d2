"""Bootstrap scoring at ImageNet val's size: time, and agreement with the old intervals.

    python benchmarks/bench_scoring.py                 # ~1 minute on 2 cores
    python benchmarks/bench_scoring.py --json out.json --device cuda

Scores generated per-image records of 50,000 images with the production evaluations
(``scoring.evaluations.score_view`` / ``score_run``, 1,000 resamples), as ``precompute``
scores ImageNet val: the ``standard`` view (accuracy, calibration raw and temperature-scaled,
ImageNet-X, ReaL) and 15 transform views (accuracy), plus agreement. It reports:

* one view's accuracy + calibration (with the ``*_ts`` metrics), including the one draw of
  the resample matrix (target <= 1 s on 2 cores);
* all 16 views (target <= 5 s on 2 cores);
* the intervals against the previous method (a numpy percentile bootstrap that drew its own
  image indices for every metric), as multiples of the Monte-Carlo standard error of an
  interval end point, estimated from 20 independent seeds of the old method: the new
  intervals should sit within about 3 standard errors.

Point estimates are the metric functions' values, unchanged by the resampling. Reports
only; never fails on numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401 - precompute has torch loaded: time the scoring, not the import

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beyond_inet.records import ImageRecords
from beyond_inet.reference import real_labels
from beyond_inet.scoring import metrics as M
from beyond_inet.scoring.evaluations import ScoringOptions, score_run, score_view

VIEWS = 16


def records(n: int, seed: int, with_ts: bool) -> ImageRecords:
    """Plausible per-image records: ~80% right, overconfident, ImageNet val names."""
    rng = np.random.default_rng(seed)
    ann = M.load_imagenet_x_annotations()["file_name"].to_numpy()
    names = np.array([f"unannotated_{i:08d}.JPEG" for i in range(1, n + 1)], dtype=object)
    names[: min(n, len(ann))] = ann[: min(n, len(ann))]
    label = rng.integers(0, 1000, n)
    conf = np.clip(rng.beta(8, 1.5, n), 0, 1).astype(np.float32)
    correct = rng.random(n) < conf * 0.9
    pred = np.where(correct, label, (label + 1) % 1000)
    topk = np.stack([pred, *((pred + k) % 1000 for k in range(1, 5))], 1)
    p_true = np.where(correct, conf, conf * 0.1).astype(np.float32)
    brier = ((1 - p_true) ** 2 + 0.05).astype(np.float32)
    ts = {}
    if with_ts:
        ts = {
            "confidence_ts": (conf * 0.9).astype(np.float32),
            "p_true_ts": (p_true * 0.9).astype(np.float32),
            "brier_ts": (brier * 0.9).astype(np.float32),
        }
    return ImageRecords(
        sample_id=names,
        label=label,
        pred=pred,
        confidence=conf,
        p_true=p_true,
        correct=correct,
        topk_idx=topk,
        topk_prob=np.tile(conf[:, None], (1, 5)),
        brier=brier,
        **ts,
    )


def _old_intervals(rec: ImageRecords, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """Percentile intervals (the method before BCa) of the standard view's means, from
    their own index draws."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(rec), (n_boot, len(rec)))
    corr = rec.correct.astype(np.float64)
    out = {}
    for name, reps in (
        ("top1", corr[idx].mean(1)),
        ("nll", M.negative_log_likelihood(rec.p_true.astype(np.float64)[idx])),
    ):
        lo, hi = np.percentile(reps, [2.5, 97.5])
        out[name] = (float(lo), float(hi))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=20, help="old-method seeds for the MC error")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    opts = ScoringOptions(n_boot=args.boot, device=args.device)
    std = records(args.images, 0, with_ts=True)
    real_labels()  # reference tables load once per process (timm is loaded in precompute)
    M.resample_counts.cache_clear()
    start = time.perf_counter()
    rows = score_view(std, ("accuracy", "calibration"), opts)
    one_view = time.perf_counter() - start
    others = [records(args.images, k, with_ts=False) for k in range(1, VIEWS)]
    M.resample_counts.cache_clear()
    start = time.perf_counter()
    score_view(std, ("accuracy", "calibration", "imagenet_x", "real"), opts)
    for rec in others:
        score_view(rec, ("accuracy",), opts)
    views = {"standard": std, **{f"view:{k}": r for k, r in enumerate(others)}}
    score_run(views, ("agreement",), opts)
    all_views = time.perf_counter() - start
    new = {r.metric: (r.ci_low, r.ci_high) for r in rows}
    old = [_old_intervals(std, args.boot, s) for s in range(args.seeds)]
    agreement = {}
    for name in ("top1", "nll"):
        ends = np.array([o[name] for o in old])  # [seeds, 2]
        se = ends.std(axis=0, ddof=1)
        agreement[name] = {
            "new": list(new[name]),
            "old_mean": ends.mean(axis=0).tolist(),
            "difference_in_mc_se": ((np.array(new[name]) - ends.mean(axis=0)) / se).tolist(),
        }
    result = {
        "images": args.images,
        "resamples": args.boot,
        "device": args.device,
        "one_view_accuracy_calibration_ts_s": round(one_view, 3),
        "sixteen_views_s": round(all_views, 3),
        "intervals_vs_previous_method": agreement,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
