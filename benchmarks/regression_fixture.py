"""Same inputs, same stored numbers? A fixed run of every dataset, to compare two code states.

    python benchmarks/regression_fixture.py run OUT_DIR          # writes OUT_DIR/*.parquet
    python benchmarks/regression_fixture.py compare DIR_A DIR_B  # exit 1 on any difference

``run`` generates, deterministically, every dataset in its real layout (ImageNet val with the
default invariance views, cue-conflict, V2, Sketch, R, A, C, Hard, PUG; the generators of
``tests/``), runs ``precompute`` on it with the trained fixture (``tests/trained.py``, through
``--checkpoint``) and two tiny random models, and dumps what the store holds —
``predictions``, ``metrics`` and the provenance columns of ``runs`` that must not change —
keyed by (model, dataset, view, sample / metric), without run ids, times or paths.
``compare`` reports the largest difference per table and column (columns new in B are
listed, not compared) and exits 1 above 1e-6. Used to check that a refactor changes no
stored number; takes about 30 s on 2 cores.

Issue 10 (the package restructuring), before -> after: identical predictions, metrics and
runs except ``brier`` (per image and its mean) within 1.4e-7 — the Brier term is now
computed by ``metrics.brier_per_image`` in float64 rather than in float32 torch — and the
new nullable columns ``pred_full`` (ImageNet-R / -A) and ``factor_value`` (PUG, Hard).

Issue 17 (the GPU path: batched inputs, on-device scoring, one resample matrix), ff1f192 ->
after, on the CPU: ``predictions`` identical (every column, bit for bit); metric values
identical except ``brier`` / ``brier_ts`` within 7e-16 (the Brier term is now summed on the
device in float64, in another order); intervals moved by Monte-Carlo noise only (new draws,
one matrix for every metric: at the fixture's 8-20 images per view an end point moves by up
to 2 nats of NLL; ``benchmarks/bench_scoring.py`` shows the agreement at 50,000 images);
``runs.settings`` gains ``run`` (device, precision, TF32, decoder, batch size, compile).

Issue 20 (records a leaf, the pipeline split into outputs / scaling / provenance / commit /
orchestration, cross-dataset roles, one identity function, OOD detection), d6313a2 -> after:
``predictions``, ``metrics`` and ``runs`` identical; ``predictions`` gains ``max_logit`` and
``logsumexp`` (the OOD scores). The fixture now also holds two OOD sets (Textures and
ImageNet-O layouts), whose runs store OOD metrics against the val run, and masks the run ids
a run's settings refer to (``fitted_by_run``, ``in_distribution_run``). The rest of issue 20
(one column codec for the store and the staged shards, records made by name, the CLI's
config split, the OOD dashboard page), e54712a -> after: identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUN_COLUMNS = [
    "model",
    "dataset",
    "weights",
    "random_weights",
    "preprocessing",
    "views",
    "settings",
    "sample_limit",
    "n_samples",
    "n_failed",
    "failed",
    "precision",
]
KEYS = {
    "predictions": ["model", "dataset", "view", "sample_id"],
    "metrics": ["model", "dataset", "view", "metric"],
    "runs": ["model", "dataset"],
}


def make_data(root: Path) -> Path:
    """Every dataset the tool knows, small, in its real layout; returns the checkpoint."""
    from beyond_inet.reference import imagenet_wnids
    from tests.conftest import CUE_PAIRS, write_corrupt_files, write_cue_conflict, write_flat_val
    from tests.test_ood import write_ood_images
    from tests.test_robustness import (
        A_WNIDS,
        C_USED,
        R_WNIDS,
        write_imagenet_c,
        write_imagenet_hard,
        write_imagenet_sketch,
        write_imagenet_v2,
        write_pug_imagenet,
        write_wnid_folders,
    )
    from tests.trained import save_trained_checkpoint

    write_flat_val(root / "imagenet" / "val", 16)
    write_corrupt_files(root / "imagenet" / "val")
    write_cue_conflict(root / "cue-conflict", CUE_PAIRS)
    write_imagenet_v2(root / "imagenetv2-matched-frequency")
    write_imagenet_sketch(root / "imagenet-sketch", imagenet_wnids()[:2])
    write_wnid_folders(root / "imagenet-r", R_WNIDS)
    write_wnid_folders(root / "imagenet-a", A_WNIDS)
    write_imagenet_c(root / "imagenet-c", C_USED)
    write_imagenet_hard(root / "imagenet-hard")
    write_pug_imagenet(root / "pug-imagenet")
    write_ood_images(root / "ood" / "textures" / "images" / "banded", 6, 4)
    write_ood_images(root / "imagenet-o" / "n01443537", 5, 5)
    return save_trained_checkpoint(root.parent / "trained.safetensors")


def _without_run_ids(settings: str) -> str:
    """A run's settings with the ids of the runs it refers to (random per run) masked."""
    d = json.loads(settings)
    if "ood" in d:
        d["ood"]["in_distribution_run"] = "<run id>"
    if "temperature_scaling" in d and "fitted_by_run" in d["temperature_scaling"]:
        d["temperature_scaling"]["fitted_by_run"] = "<run id>"
    return json.dumps(d, sort_keys=True)


def run(out: Path) -> None:
    from beyond_inet.store import Store
    from precompute.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "datasets"
        ckpt = make_data(data)
        store = Path(tmp) / "r.duckdb"
        common = [
            "--data-root",
            str(data),
            "--store",
            str(store),
            "--workers",
            "0",
            "--bootstrap",
            "30",
            "--quiet",
        ]
        assert main(["--model", "timm:test_vit", "--checkpoint", str(ckpt), *common]) == 0
        assert (
            main(
                [
                    "--model",
                    "timm:test_convnext,open_clip:test-tiny-clip",
                    "--random-weights",
                    "--no-invariance",
                    *common,
                ]
            )
            == 0
        )
        s = Store(store)
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "predictions": s.query("SELECT * EXCLUDE (run_id) FROM predictions"),
            "metrics": s.query("SELECT * EXCLUDE (run_id) FROM metrics"),
            "runs": s.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"),
        }
        # failures by sample id (their messages name the temporary folder)
        tables["runs"]["failed"] = [
            ",".join(sorted(f["sample_id"] for f in json.loads(x)))
            for x in tables["runs"]["failed"]
        ]
        tables["runs"]["settings"] = [_without_run_ids(x) for x in tables["runs"]["settings"]]
        for name, df in tables.items():
            df.sort_values(KEYS[name]).reset_index(drop=True).to_parquet(out / f"{name}.parquet")
            print(f"{name}: {len(df)} rows -> {out / name}.parquet")


def _diff(a: pd.Series, b: pd.Series) -> float:
    """The largest difference of two aligned columns (NaN == NaN; lists elementwise)."""
    if (
        a.dtype == object
        and len(a)
        and isinstance(a.dropna().iloc[0] if a.notna().any() else None, list | np.ndarray)
    ):
        return max(
            (_diff(pd.Series(list(x)), pd.Series(list(y))) for x, y in zip(a, b, strict=True)),
            default=0.0,
        )
    if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
        x, y = a.to_numpy(float), b.to_numpy(float)
        both_nan = np.isnan(x) & np.isnan(y)
        d = np.where(both_nan, 0.0, np.abs(x - y))
        return float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if len(d) else 0.0
    same = (a.astype(str) == b.astype(str)) | (a.isna() & b.isna())
    return 0.0 if same.all() else float("inf")


def compare(a_dir: Path, b_dir: Path) -> int:
    worst = 0.0
    for name, keys in KEYS.items():
        a = pd.read_parquet(a_dir / f"{name}.parquet").set_index(keys).sort_index()
        b = pd.read_parquet(b_dir / f"{name}.parquet").set_index(keys).sort_index()
        if not a.index.equals(b.index):
            only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
            print(
                f"{name}: different rows ({len(only_a)} only in A, {len(only_b)} only in B),"
                f" e.g. {list(only_a[:3])} / {list(only_b[:3])}"
            )
            worst = float("inf")
            continue
        for col in sorted(set(a.columns) | set(b.columns)):
            if col not in b:
                print(f"{name}.{col}: only in A (a stored column was lost)")
                worst = float("inf")
                continue
            if col not in a:  # a new stored column changes no existing number
                print(f"{name}.{col}: new in B ({int(b[col].notna().sum())} non-null values)")
                continue
            d = _diff(a[col], b[col])
            worst = max(worst, d)
            if d > 0:
                print(f"{name}.{col}: max difference {d:.3g}")
        print(f"{name}: {len(a)} rows compared")
    print("identical" if worst == 0 else f"largest difference: {worst:.3g}")
    return 0 if worst <= 1e-6 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "run":
        run(args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())
