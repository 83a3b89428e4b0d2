"""Command line: argv is parsed and converted to typed config here, and only here."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from beyond_inet.data import DATASETS, DatasetLayoutError
from beyond_inet.engine import RunSettings, resolve_device
from beyond_inet.evaluations import ScoringOptions
from beyond_inet.models import (
    MODELS,
    CheckpointMismatchError,
    WeightsSource,
    WeightsUnavailableError,
)
from beyond_inet.pipeline import PrecomputeConfig, PrecomputeError, format_summary, run_precompute
from beyond_inet.registry import UnknownNameError
from beyond_inet.store import StoreLockedError
from beyond_inet.views import VIEW_GRIDS, ViewError, format_number, grid_views, parse_view


def _epilog() -> str:
    models = "\n".join(f"  {n:<18} {s.display:<14} {s.description}" for n, s in MODELS.items())
    datasets = "\n".join(f"  {n:<14} {s.layout}" for n, s in DATASETS.items())
    return (
        "models (--model; 'all' = the four below):\n" + models
        + "\n  timm:<name>        any timm model, e.g. timm:resnet50.a1_in1k"
        + "\n  open_clip:<arch>:<tag>  any open_clip model as a zero-shot classifier\n\n"
        + "datasets (--dataset; default: every one found under --data-root):\n" + datasets
    )


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _positive(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _grid(family: str) -> Callable[[str], tuple[float, ...]]:
    """argparse type: comma-separated values of one view family, each validated."""

    def parse(value: str) -> tuple[float, ...]:
        values = _csv(value)
        try:
            for v in values:
                parse_view(f"{family}:{v}")
        except ViewError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return tuple(float(v) for v in values)

    return parse


def _dataset_path(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, Path(path)


def build_parser() -> argparse.ArgumentParser:
    """The ``precompute`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m precompute",
        description="Evaluate image classifiers and store per-image results in DuckDB.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="model(s) to evaluate; repeatable; 'all' = the paper's four (default)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--checkpoint", type=Path, metavar="PATH",
                   help="local safetensors / PyTorch state-dict file for the (single) --model")
    w.add_argument("--random-weights", action="store_true",
                   help="random init (smoke tests; recorded as 'random', numbers meaningless)")
    p.add_argument("--data-root", type=Path, default=Path("data/datasets"), metavar="DIR",
                   help="folder holding the datasets in their conventional layouts "
                   "(default: data/datasets)")
    p.add_argument("--dataset", action="append", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="dataset(s) to run; repeatable (default: all found)")
    p.add_argument("--dataset-path", action="append", type=_dataset_path, default=[],
                   metavar="NAME=DIR", help="explicit folder for one dataset; repeatable")
    p.add_argument("--list-datasets", action="store_true",
                   help="list every dataset: found or missing under --data-root, images, "
                   "expected layout, how to get it (no --model needed)")
    p.add_argument("--download", action="append", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="download, verify and extract public datasets into --data-root "
                   "(resumable; no --model needed)")
    p.add_argument("--store", type=Path, default=Path("data/results.duckdb"), metavar="PATH",
                   help="DuckDB results store (default: data/results.duckdb)")
    p.add_argument("--limit", type=_positive, metavar="N",
                   help="only the first N images of each dataset (smoke runs)")
    p.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="default 64")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
                   help="DataLoader decode workers (default: min(8, CPUs))")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when available (default)")
    p.add_argument("--force", action="store_true",
                   help="recompute runs already in the store and replace them")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (opt-in)")
    p.add_argument("--preprocessing", choices=("paper", "weights"), default="paper",
                   help="paper = the paper's eval recipe for its four models (default); "
                   "weights = each weights' own config (timm / open_clip)")
    p.add_argument("--logit-scale", type=float, default=100.0, metavar="S",
                   help="CLIP zero-shot logit scale (default 100, as in the paper)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for 95%% intervals (0 = none; default 1000)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where CLIP zero-shot heads are cached "
                   "(default: $BEYOND_INET_CACHE or ~/.cache/beyond_inet)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    inv = p.add_argument_group(
        "invariance views of imagenet-val (see README: scale / shift / resolution)")
    for family, flag, meta in (("scale", "--scales", "S[,S]"), ("shift", "--shifts", "N[,N]"),
                               ("resolution", "--resolutions", "R[,R]")):
        default = ",".join(format_number(v) for v in VIEW_GRIDS[family])
        inv.add_argument(flag, type=_grid(family), default=None, metavar=meta,
                         help=f"{family}:<value> views (default: {default}; '' = none)")
    inv.add_argument("--no-invariance", action="store_true",
                     help="only the standard view of imagenet-val (no scale / shift / resolution)")
    return p


def invariance_views(args: argparse.Namespace) -> tuple[str, ...]:
    """The transform view names for ``--scales / --shifts / --resolutions`` (defaults:
    :data:`beyond_inet.views.VIEW_GRIDS`), or none with ``--no-invariance``."""
    if args.no_invariance:
        return ()
    given = {"scale": args.scales, "shift": args.shifts, "resolution": args.resolutions}
    return grid_views({f: VIEW_GRIDS[f] if v is None else v for f, v in given.items()})


def config_from_args(args: argparse.Namespace) -> PrecomputeConfig:
    """Convert parsed argv to a typed :class:`PrecomputeConfig`."""
    models = tuple(m for group in (args.model or [["all"]]) for m in group)
    datasets = tuple(d for group in args.dataset for d in group) if args.dataset else None
    for name, _ in args.dataset_path:
        DATASETS.get(name)
    if args.checkpoint is not None:
        weights = WeightsSource("checkpoint", args.checkpoint)
    else:
        weights = WeightsSource("random" if args.random_weights else "hub")
    return PrecomputeConfig(
        models=models,
        data_root=args.data_root,
        store=args.store,
        datasets=datasets,
        dataset_paths=dict(args.dataset_path),
        weights=weights,
        preprocessing=args.preprocessing,
        logit_scale=args.logit_scale,
        limit=args.limit,
        run=RunSettings(device=resolve_device(args.device), batch_size=args.batch_size,
                        workers=max(0, args.workers), compile=args.compile,
                        progress=not args.quiet),
        force=args.force,
        scoring=ScoringOptions(n_boot=max(0, args.bootstrap)),
        cache_dir=args.cache_dir,
        extra_views=invariance_views(args),
    )


USER_ERRORS = (
    UnknownNameError, WeightsUnavailableError, CheckpointMismatchError, DatasetLayoutError,
    PrecomputeError, StoreLockedError, FileNotFoundError,
)


def _datasets_command(args: argparse.Namespace) -> int:
    """``--download`` then ``--list-datasets`` (both honour --data-root / --dataset-path);
    returns the exit status. Without ``--model`` that is all the invocation does."""
    from beyond_inet.downloads import (
        DownloadError,
        dataset_statuses,
        download_dataset,
        format_dataset_list,
    )

    try:
        for name in (n for group in args.download or [] for n in group):
            download_dataset(name, args.data_root, progress=not args.quiet,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.list_datasets:
            print(format_dataset_list(dataset_statuses(args.data_root, dict(args.dataset_path))))
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DownloadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, 2 bad input, 1 failure)."""
    args = build_parser().parse_args(argv)
    if args.list_datasets or args.download:
        status = _datasets_command(args)
        if status or args.model is None:  # with --model, go on to evaluate
            return status
    try:
        cfg = config_from_args(args)
        summaries = run_precompute(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except duckdb.Error as e:
        print(f"error: results store {args.store}: {str(e).splitlines()[0]} "
              "(pass another --store)", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summaries))
    failed = max((s.n_failed for s in summaries), default=0)
    if failed:
        print(f"{failed} image(s) could not be decoded and were skipped (listed above and in the "
              "store's runs.failed).", file=sys.stderr)
    return 0
