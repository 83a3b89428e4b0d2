"""Command line: argv is parsed and converted to typed config here, and only here.

Only light modules are imported at the top (no torch, timm or open_clip), so ``--help``,
``--list-datasets`` and argument errors answer at once; a run imports the rest.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from beyond_inet import settings
from beyond_inet.datasets import DATASETS, DatasetLayoutError
from beyond_inet.datasets.own import OwnData, OwnSource, format_own_list, load_own, parse_own
from beyond_inet.datasets.transfer import SPLIT_PROTOCOLS, TASKS, expand_tasks
from beyond_inet.models import (
    FAMILIES,
    MODELS,
    CheckpointMismatchError,
    WeightsSource,
    WeightsUnavailableError,
    resolve_spec,
)
from beyond_inet.registry import UnknownNameError
from beyond_inet.run.errors import PrecomputeError
from beyond_inet.settings import DECODERS, PRECISIONS, TOKEN_POOLS
from beyond_inet.store import StoreError
from beyond_inet.transforms.views import (
    VIEW_GRIDS,
    ViewError,
    format_number,
    grid_views,
    parse_view,
)

if TYPE_CHECKING:
    from beyond_inet.run.engine import RunSettings
    from beyond_inet.run.plan import PrecomputeConfig


def _epilog() -> str:
    models = "\n".join(f"  {n:<18} {s.display:<14} {s.description}" for n, s in MODELS.items())
    datasets = "\n".join(f"  {n:<14} {s.layout.text}" for n, s in DATASETS.items())
    families = "".join(f"\n  {f.syntax:<26} {f.about}" for _, f in FAMILIES.items())
    return (
        "models (--model; 'all' = the four below):\n"
        + models
        + families
        + "\n\ndatasets (--dataset; default: every one found under --data-root):\n"
        + datasets
        + "\n\n--list-datasets (with --data-root DIR) shows each dataset's layout, where it is "
        "expected and whether it is found,\nthe VTAB transfer tasks included. Without "
        "ImageNet, try the bundled generated sample (numbers meaningless):\n"
        "  python -m precompute --model timm:test_vit --random-weights --data-root data/sample"
    )


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return n


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value!r}")
    return n


def _logit_scale(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0 (the paper uses 100), got {value!r}"
        )
    return x


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


def _shard(value: str) -> tuple[int, int]:
    i, sep, n = value.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index, count = -1, 0
    if not sep or not (count >= 1 and 0 <= index < count):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {value!r}")
    return index, count


def _dataset_path(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, Path(path)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where help is (exit 2), not the
    18-line usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            2,
            f"error: {message}. See `python -m precompute --help` "
            "(dataset layouts: --list-datasets).\n",
        )


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--shard -1/2`` -> ``--shard=-1/2``: argparse would take ``-1/2`` for an option and
    say "expected one argument" instead of what is wrong with the value."""
    out: list[str] = []
    for a in argv:
        if out and out[-1] == "--shard" and a.startswith("-") and a[1:2].isdigit():
            out[-1] = f"--shard={a}"
        else:
            out.append(a)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``precompute`` argument parser."""
    p = _Parser(
        prog="python -m precompute",
        description="Evaluate image classifiers and store per-image results in DuckDB.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        action="append",
        type=_csv,
        default=None,
        metavar="NAME[,NAME]",
        help="model(s) to evaluate; repeatable; 'all' = the paper's four (default)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="measure what each --model costs on --device at --precision (throughput at "
        "batch 1 and at the best batch up to --batch-size, latency p50/p95, peak memory) "
        "and store it; needs no dataset",
    )
    p.add_argument(
        "--fetch-weights",
        action="store_true",
        help="download (or verify in the local cache) the weights and CLIP "
        "zero-shot heads of --model, for later offline runs; needs no dataset",
    )
    w = p.add_mutually_exclusive_group()
    w.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="local safetensors / PyTorch state-dict file for the (single) --model",
    )
    w.add_argument(
        "--random-weights",
        action="store_true",
        help="random init (smoke tests; recorded as 'random', numbers meaningless)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=settings.DEFAULT_DATA_ROOT,
        metavar="DIR",
        help="folder holding the datasets in their conventional layouts (default: data/datasets)",
    )
    p.add_argument(
        "--dataset",
        action="append",
        type=_csv,
        default=None,
        metavar="NAME[,NAME]",
        help="dataset(s) to run; repeatable (default: all found)",
    )
    p.add_argument(
        "--dataset-path",
        action="append",
        type=_dataset_path,
        default=[],
        metavar="NAME=DIR",
        help="explicit folder for one dataset; repeatable",
    )
    p.add_argument(
        "--list-datasets",
        action="store_true",
        help="list every dataset: found or missing under --data-root, images, "
        "expected layout, how to get it (no --model needed)",
    )
    p.add_argument(
        "--download",
        action="append",
        type=_csv,
        default=None,
        metavar="NAME[,NAME]",
        help="download, verify and extract public datasets into --data-root "
        "(resumable; no --model needed)",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=settings.DEFAULT_STORE,
        metavar="PATH",
        help="DuckDB results store (default: data/results.duckdb)",
    )
    p.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="a class-balanced seeded sample of N images of each dataset (smoke runs)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=None,
        metavar="N",
        help=f"default {settings.DEFAULT_BATCH_SIZE} on the CPU, {settings.DEFAULT_GPU_BATCH_SIZE} "
        "on a GPU (a batch that runs out of GPU memory is split, never lost)",
    )
    p.add_argument(
        "--workers",
        type=_non_negative,
        default=settings.default_workers(),
        metavar="N",
        help="decode worker processes, kept for the whole run (default: one per CPU)",
    )
    p.add_argument(
        "--decode",
        choices=DECODERS,
        default="pil",
        help="pil = PIL in the workers (default, the reference); device = JPEGs decoded in "
        "batches on the run's device (nvJPEG on CUDA), other files by PIL",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=settings.default_device(),
        help="auto = cuda when available (default: $BEYOND_INET_DEVICE or auto)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default, as the paper) or bf16 (the backbone under bf16 autocast, "
        "faster on GPUs); the head, softmax and metrics are fp32 either way",
    )
    p.add_argument(
        "--force", action="store_true", help="recompute runs already in the store and replace them"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the models (opt-in)")
    p.add_argument(
        "--tf32",
        action="store_true",
        help="let fp32 matmuls and convolutions use TF32 on GPUs that have it (default off: "
        "fp32 means IEEE fp32); recorded with the run",
    )
    p.add_argument(
        "--preprocessing",
        choices=("paper", "weights"),
        default="paper",
        help="paper = the paper's eval recipe for its four models (default); "
        "weights = each weights' own config (timm / open_clip)",
    )
    p.add_argument(
        "--logit-scale",
        type=_logit_scale,
        default=settings.DEFAULT_LOGIT_SCALE,
        metavar="S",
        help="CLIP zero-shot logit scale (default %(default)s, as in the paper)",
    )
    p.add_argument(
        "--bootstrap",
        type=_non_negative,
        default=settings.DEFAULT_BOOTSTRAP,
        metavar="N",
        help="bootstrap resamples for 95%% intervals (0 = none; default %(default)s)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="where CLIP zero-shot heads are cached "
        "(default: $BEYOND_INET_CACHE or ~/.cache/beyond_inet)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    tr = p.add_argument_group(
        "transferability (linear probes on frozen features; see README: Transfer)"
    )
    tr.add_argument(
        "--transfer",
        action="append",
        type=_csv,
        default=None,
        metavar="TASK[,TASK]",
        help="probe --model on VTAB tasks under DATA_ROOT/vtab/ instead of the ImageNet "
        "evaluations: task names, a group (natural, specialized, structured) or all",
    )
    tr.add_argument(
        "--transfer-protocol",
        choices=[n for n, _ in SPLIT_PROTOCOLS.items()],
        default="vtab-1k",
        help="vtab-1k = 800 train + 200 val images, seed 0 (default); full = the whole "
        "training set, a seeded 10%% as val",
    )
    own = p.add_argument_group("your own images (see README: Your own images)")
    own.add_argument(
        "--own",
        action="append",
        type=_own,
        default=None,
        metavar="NAME=PATH",
        help="evaluate --model on your labelled images instead of the ImageNet evaluations "
        "(linear probe, k-NN and, for CLIP models, zero-shot on the class names): PATH is an "
        "image folder (<class>/*.jpg, or train|val|test/<class>/*.jpg) or a CSV of "
        "path,label[,split]; repeatable",
    )
    sim = p.add_argument_group("representation similarity (linear CKA; see README: CKA)")
    sim.add_argument(
        "--cka",
        type=_csv,
        default=None,
        metavar="MODEL_A,MODEL_B",
        help="layer x layer linear CKA of two models (one name: the model with itself) "
        "on --dataset (default imagenet-val)",
    )
    sim.add_argument(
        "--cka-estimator",
        choices=("minibatch", "full"),
        default="minibatch",
        help="minibatch = unbiased HSIC over minibatches (Nguyen et al. 2021; default); full = "
        "the biased full-batch CKA most published heatmaps use (Kornblith et al. 2019)",
    )
    sim.add_argument(
        "--cka-images",
        type=_positive,
        default=settings.DEFAULT_CKA_IMAGES,
        metavar="N",
        help="images in the CKA estimate, a seeded sample (default %(default)s)",
    )
    sim.add_argument(
        "--cka-tokens",
        choices=TOKEN_POOLS,
        default="mean",
        help="how a transformer layer's tokens are pooled: mean over patch tokens "
        "(default) or the class token",
    )
    sc = p.add_argument_group(
        "scale-out (see README: How it runs; torchrun -m precompute needs neither option)"
    )
    sc.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="evaluate shard I of N (0-based) into the staging area next to --store, "
        "without committing (SLURM job arrays; then --merge)",
    )
    sc.add_argument(
        "--merge",
        action="store_true",
        help="commit the runs whose --shard jobs (same options) are all staged",
    )
    inv = p.add_argument_group(
        "invariance views of imagenet-val (see README: scale / shift / resolution)"
    )
    for family, flag, meta in (
        ("scale", "--scales", "S[,S]"),
        ("shift", "--shifts", "N[,N]"),
        ("resolution", "--resolutions", "R[,R]"),
    ):
        default = ",".join(format_number(v) for v in VIEW_GRIDS[family])
        inv.add_argument(
            flag,
            type=_grid(family),
            default=None,
            metavar=meta,
            help=f"{family}:<value> views (default: {default}; '' = none)",
        )
    inv.add_argument(
        "--no-invariance",
        action="store_true",
        help="only the standard view of imagenet-val (no scale / shift / resolution)",
    )
    return p


def invariance_views(args: argparse.Namespace) -> tuple[str, ...]:
    """The transform view names for ``--scales / --shifts / --resolutions`` (defaults:
    :data:`beyond_inet.transforms.views.VIEW_GRIDS`), or none with ``--no-invariance``."""
    if args.no_invariance:
        return ()
    given = {"scale": args.scales, "shift": args.shifts, "resolution": args.resolutions}
    return grid_views({f: VIEW_GRIDS[f] if v is None else v for f, v in given.items()})


def _own(text: str) -> OwnSource:
    """argparse type of ``--own NAME=PATH``."""
    try:
        return parse_own(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check_modes(args: argparse.Namespace) -> None:
    """The run modes (plain, --transfer, --own, --cka, --shard / --merge, torchrun) combine
    only as they can."""
    if sum(bool(x) for x in (args.transfer, args.cka, args.own)) > 1:
        raise UsageError("--transfer, --own and --cka are separate runs; give one of them.")
    if args.own and args.dataset:
        raise UsageError("--own evaluates your images only: drop --dataset (or run it apart).")
    if args.own and (args.shard or args.merge):
        raise UsageError("--shard / --merge apply to the ImageNet evaluations only.")
    if args.own and settings.dist_env() is not None and settings.dist_env()[1] > 1:
        raise UsageError("run --own as one process (python -m precompute), not torchrun.")
    if (args.shard or args.merge) and (args.transfer or args.cka):
        raise UsageError("--shard / --merge apply to the ImageNet evaluations only.")
    if args.shard and args.merge:
        raise UsageError("--shard stages one shard; --merge (a separate call) commits them.")
    env = settings.dist_env()
    if env is not None and env[1] > 1 and (args.shard or args.merge or args.transfer or args.cka):
        raise UsageError(
            "under torchrun the ranks shard the ImageNet evaluations themselves: run "
            "--shard / --merge / --transfer / --cka as one process (python -m precompute)."
        )


def _check_names(args: argparse.Namespace) -> None:
    """--cka models, --transfer tasks and --dataset-path names exist (typos fail here,
    before any model is loaded)."""
    if args.cka is not None and not 1 <= len(args.cka) <= 2:
        raise UsageError("--cka takes MODEL_A,MODEL_B (or one model, compared with itself).")
    if args.cka and "all" in args.cka:
        raise UsageError("--cka takes two model names, not a group such as 'all'.")
    for name in args.cka or ():
        resolve_spec(name)
    if args.transfer is not None and not any(args.transfer):
        raise UsageError(
            "--transfer needs task names, a group (natural, specialized, structured) or all; "
            "--list-datasets shows the tasks."
        )
    if args.transfer:
        expand_tasks([t for group in args.transfer for t in group])
    for name, _ in args.dataset_path:
        if not (args.transfer and name in TASKS):
            DATASETS.get(name)


def _weights(args: argparse.Namespace) -> WeightsSource:
    """--checkpoint FILE, --random-weights or the hub's."""
    if args.checkpoint is None:
        return WeightsSource("random" if args.random_weights else "hub")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(
            f"--checkpoint {args.checkpoint} does not exist (give a "
            ".safetensors or PyTorch state-dict file)."
        )
    return WeightsSource("checkpoint", args.checkpoint)


def _run_settings(args: argparse.Namespace) -> RunSettings:
    """How passes run: device, batch size, workers, precision, decoder, progress."""
    from beyond_inet.run.engine import RunSettings, resolve_batch_size, resolve_device

    if args.device not in ("auto", "cpu", "cuda"):
        raise UsageError(
            f"--device {args.device!r} (from ${settings.DEVICE_ENV}?): use auto, cpu or cuda."
        )
    device = resolve_device(args.device)
    return RunSettings(
        device=device,
        batch_size=resolve_batch_size(args.batch_size, device),
        workers=args.workers,
        compile=args.compile,
        progress=not args.quiet,
        precision=args.precision,
        tf32=args.tf32,
        decode=args.decode,
    )


def _flat(groups: list[list[str]] | None) -> tuple[str, ...]:
    """Comma-separated option values given once or more, flattened."""
    return tuple(x for group in groups or [] for x in group)


def config_from_args(args: argparse.Namespace) -> PrecomputeConfig:
    """Convert parsed argv to a typed :class:`PrecomputeConfig` (bad combinations and
    unknown names raise :class:`UsageError` / the registries' errors here)."""
    from beyond_inet.run.engine import Shard
    from beyond_inet.run.plan import PrecomputeConfig
    from beyond_inet.scoring.evaluations import ScoringOptions

    _check_modes(args)
    _check_names(args)
    run = _run_settings(args)
    return PrecomputeConfig(
        models=_flat(args.model) if args.model else ("all",),
        data_root=args.data_root,
        store=args.store,
        datasets=_flat(args.dataset) if args.dataset else None,
        dataset_paths=dict(args.dataset_path),
        weights=_weights(args),
        preprocessing=args.preprocessing,
        logit_scale=args.logit_scale,
        limit=args.limit,
        run=run,
        force=args.force,
        scoring=ScoringOptions(n_boot=args.bootstrap, device=run.device),
        cache_dir=args.cache_dir,
        extra_views=invariance_views(args),
        transfer=_flat(args.transfer),
        transfer_protocol=args.transfer_protocol,
        cka=tuple(args.cka or ()),
        cka_images=args.cka_images,
        cka_tokens=args.cka_tokens,
        cka_estimator=args.cka_estimator,
        shard=Shard(*args.shard) if args.shard else None,
        merge=args.merge,
        own=tuple(args.own or ()),
    )


class UsageError(ValueError):
    """A combination of options that does not make sense (one-line message)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownNameError,
    WeightsUnavailableError,
    CheckpointMismatchError,
    DatasetLayoutError,
    StoreError,
    FileNotFoundError,
    UsageError,
    ViewError,
)


def _configure_logging() -> None:
    """Library warnings as one plain line (``warning: ...``), never ``WARNING:root:``."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", force=True)


def _fetch_command(args: argparse.Namespace) -> int:
    """``--fetch-weights``: weights (and CLIP heads) of every --model, no dataset needed."""
    from beyond_inet.models import LoadOptions, expand_model_names, fetch_weights, resolve_spec

    if args.checkpoint is not None or args.random_weights:
        raise UsageError(
            "--fetch-weights gets hub weights; it does not combine with "
            "--checkpoint or --random-weights."
        )
    names = expand_model_names([m for group in (args.model or [["all"]]) for m in group])
    for n in names:  # typos fail before any download
        resolve_spec(n)
    opts = LoadOptions(
        preprocessing=args.preprocessing, logit_scale=args.logit_scale, cache_dir=args.cache_dir
    )

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    for i, n in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {n}")
        fetch_weights(n, opts, log)
    print(
        f"weights ready for {len(names)} model(s): {', '.join(names)}. Later runs need no "
        "network (HF_HUB_OFFLINE=1 works)."
    )
    return 0


def _profile_command(args: argparse.Namespace) -> int:
    """``--profile``: what each --model costs on this device and precision (no dataset)."""
    from beyond_inet.catalog import published_throughput
    from beyond_inet.run.profile import ProfileOptions, format_profiles, run_profiles

    if args.transfer or args.cka or args.shard or args.merge:
        raise UsageError("--profile measures models only; drop --transfer / --cka / --shard.")
    if settings.dist_env() is not None:
        raise UsageError("--profile runs as one process (python -m precompute), not torchrun.")
    cfg = config_from_args(args)
    opts = ProfileOptions(max_batch=cfg.run.batch_size)
    ignored = [
        flag for flag, value in (("--dataset", args.dataset), ("--limit", args.limit)) if value
    ]
    if ignored:
        print(
            f"note: --profile needs no images; {' and '.join(ignored)} ignored.",
            file=sys.stderr,
        )

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    done, skipped = run_profiles(cfg, opts, log)
    if done:
        print(format_profiles(done, published_throughput()))
        print(f"stored in {cfg.store} (dataset 'profile'); the finder and Compare show them.")
    if skipped:
        print(
            f"{len(skipped)} model(s) already profiled with these settings: "
            f"{', '.join(skipped)} (--force measures again)."
        )
    return 0


def _datasets_command(args: argparse.Namespace) -> int:
    """``--download`` then ``--list-datasets`` (both honour --data-root / --dataset-path);
    returns the exit status. Without ``--model`` that is all the invocation does."""
    from beyond_inet.datasets.downloads import (
        DownloadError,
        dataset_statuses,
        download_dataset,
        format_dataset_list,
    )
    from beyond_inet.datasets.transfer import download_task, format_task_list, task_statuses

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    try:
        for name in (n for group in args.download or [] for n in group):
            if name in TASKS:
                download_task(TASKS.get(name), args.data_root, log)
            else:
                download_dataset(name, args.data_root, progress=not args.quiet, log=log)
        if args.list_datasets:
            paths = dict(args.dataset_path)
            print(format_dataset_list(dataset_statuses(args.data_root, paths)))
            print()
            print(format_task_list(task_statuses(args.data_root, paths)))
            if args.own:
                print()
                print(format_own_list([_own_status(src) for src in args.own]))
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (DownloadError, DatasetLayoutError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _own_status(src: OwnSource) -> OwnData | tuple[OwnSource, str]:
    """An ``--own`` dataset as ``--list-datasets`` shows it: split, or its problem."""
    try:
        return load_own(src)
    except (DatasetLayoutError, OSError) as e:
        return src, _one_line(e)


def _interrupted(store: Path) -> str:
    """What Ctrl-C leaves behind: nothing partial; staged runs are said."""
    from beyond_inet.store import Store

    staged = Store(store).staged_runs()
    msg = "interrupted; nothing partial was stored."
    if staged:
        msg += (
            f" {len(staged)} computed run(s) are staged in {Store(store).staging_dir} and "
            "will be committed by the next precompute on this store."
        )
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, 2 bad input, 1 failure,
    130 interrupted)."""
    args = build_parser().parse_args(
        _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    )
    _configure_logging()
    try:
        if args.fetch_weights:
            return _fetch_command(args)
        if args.profile:
            return _profile_command(args)
        if args.list_datasets or args.download:
            status = _datasets_command(args)
            if status or args.model is None:  # with --model, go on to evaluate
                return status
        from beyond_inet.run.commit import format_summary
        from beyond_inet.run.pipeline import run_precompute

        cfg = config_from_args(args)
        log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        if cfg.cka:
            from beyond_inet.run.similarity import run_cka

            print(run_cka(cfg, log=log))
            return 0
        if cfg.transfer:
            from beyond_inet.run.transfer import run_transfer

            summaries = run_transfer(cfg, log=log)
        elif cfg.own:
            from beyond_inet.run.own import run_own

            summaries = run_own(cfg, log=log)
        else:
            summaries = run_precompute(cfg, log=log)
    except KeyboardInterrupt:
        if _main_rank():  # under torchrun every rank is interrupted; rank 0 says it once
            print(f"\n{_interrupted(args.store)}", file=sys.stderr)
        return 130
    except (*USER_ERRORS, PrecomputeError) as e:
        if _main_rank():  # every rank refuses the same input; rank 0 says it once
            print(f"error: {_one_line(e)}", file=sys.stderr)
        else:
            from beyond_inet.run.distributed import await_main_rank

            await_main_rank()  # not before rank 0 has said it (torchrun stops the others)
        return 2
    except RuntimeError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    if not _main_rank():
        return 0  # rank 0 prints for the job
    print(format_summary(summaries))
    exists = [s for s in summaries if s.status == "exists"]
    if exists:
        print(
            f"{len(exists)} run(s) were not stored: another process stored the same run "
            "first (see above).",
            file=sys.stderr,
        )
    failed = max((s.n_failed for s in summaries), default=0)
    if failed:
        print(
            f"{failed} image(s) could not be decoded and were skipped (listed above and in the "
            "store's runs.failed).",
            file=sys.stderr,
        )
    return 0


def _main_rank() -> bool:
    """True outside torchrun, and on its rank 0."""
    env = settings.dist_env()
    return env is None or env[0] == 0


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__
