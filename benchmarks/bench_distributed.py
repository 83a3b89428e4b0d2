"""Scaling of ``torchrun -m precompute``: images/s and efficiency for 1 and N processes.

    python benchmarks/bench_distributed.py                     # CPU, gloo, 1 and 2 processes
    python benchmarks/bench_distributed.py --procs 1,8 --device cuda --images 5000 \\
        --model timm:vit_base_patch16_224                      # a multi-GPU machine (NCCL)

Generates an ImageNet-style folder, then runs the real CLI once per process count (``torchrun
--nproc-per-node N -m precompute ... --no-invariance --bootstrap 0``, random weights, a fresh
store each time) and reports wall time, images/s and scaling efficiency
(``images/s at N / (N x images/s at 1)``). The wall time includes start-up, model loading,
the gather and the commit, as a user sees it. Reports only; never fails on numbers.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import write_flat_val  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(procs: int, data: Path, store: Path, args: argparse.Namespace) -> float:
    """Wall seconds of one precompute with ``procs`` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs)]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "precompute"]
    cmd += ["--model", args.model, "--random-weights", "--dataset", "imagenet-val"]
    cmd += ["--data-root", str(data), "--store", str(store), "--no-invariance"]
    cmd += ["--bootstrap", "0", "--quiet", "--device", args.device]
    cmd += ["--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", default="1,2", help="process counts to compare")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--model", default="timm:test_vit")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="decode workers per process")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_flat_val(d / "data" / "imagenet" / "val", args.images)
        print(f"{args.images} images, {args.model}, {args.device}")
        base = None
        for n in counts:
            secs = run(n, d / "data", d / f"s{n}.duckdb", args)
            rate = args.images / secs
            base = base or rate / n
            print(
                f"  {n} process(es): {secs:6.1f} s  {rate:7.1f} images/s  "
                f"efficiency {rate / (n * base):5.0%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
