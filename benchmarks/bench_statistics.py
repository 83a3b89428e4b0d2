"""What the paired statistics and temperature scaling add to a run, at ImageNet val's size.

    python benchmarks/bench_statistics.py              # ~1 minute on 2 cores
    python benchmarks/bench_statistics.py --images 10000

Times the production functions on generated inputs of a full ImageNet val (50,000 images,
1,000 classes): the temperature cross-fit (``scoring.temperature.cross_fit``, scipy's bounded
search, three fits) on fp32 logits; the paired comparison of two models on one view
(``scoring.paired.compare``: McNemar, 1,000 paired bootstrap resamples, kappa), which
``precompute`` stores for every model pair and view of a pass; and the Overview's paired
bootstrap test of an ECE difference (``bootstrap_difference_p``, vectorised, 500
resamples). Reports only; never fails on numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beyond_inet.scoring import metrics as M
from beyond_inet.scoring import temperature as ts
from beyond_inet.scoring.paired import bootstrap_difference_p, compare


def _timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=1000)
    args = ap.parse_args(argv)
    n, k = args.images, args.classes
    rng = np.random.default_rng(0)
    logits = (rng.normal(0, 2.0, (n, k)) * 2.5).astype(np.float32)
    labels = rng.integers(0, k, n)
    logits[np.arange(n), labels] += 6.0  # right about 80% of the time, overconfident
    ids = [f"n{i % 1000:08d}/ILSVRC2012_val_{i:08d}.JPEG" for i in range(n)]
    folds = ts.folds(ids)
    t_fit = _timed(lambda: ts.cross_fit(logits, labels, folds))
    fit = ts.cross_fit(logits, labels, folds)
    a = logits.argmax(1) == labels
    b = np.where(rng.random(n) < 0.9, a, ~a)
    t_pair = _timed(lambda: compare(a, b, 1000, 0), repeat=3)
    conf = rng.random(n)

    def ece(c: np.ndarray, k_: np.ndarray) -> np.ndarray:
        return M.expected_calibration_error(c, k_.astype(float), 15)

    t_ece = _timed(
        lambda: bootstrap_difference_p(ece, (conf, a), (conf * 0.9, b), 500, vectorized=True)
    )
    print(f"{n:,} images, {k} classes (fp32 logits: {logits.nbytes / 2**20:.0f} MiB kept)")
    print(f"temperature cross-fit (3 fits):         {t_fit:6.2f} s   T = {fit.temperature:.3f}")
    print(f"paired comparison, one view:            {t_pair:6.2f} s   (x model pairs x views)")
    print(f"paired bootstrap test of ECE (Overview): {t_ece:6.2f} s   per model vs the best")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
