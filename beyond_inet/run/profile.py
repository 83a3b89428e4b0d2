"""What a model costs on this machine: ``python -m precompute --profile``.

For each model, on the run's device and precision, with the forward pass precompute runs
(:func:`~beyond_inet.models.contract.logits_of`: trunk at the precision, head in fp32) on
random inputs of the weights' own crop size:

* **batch 1**: throughput (img/s), latency p50 / p95 (ms, per forward, device-synchronised)
  and peak memory;
* throughput at a batch size is the batch size over the median time of a forward (robust
  to the odd slow call on a shared machine; at batch 1 it is 1000 / p50);
* **best batch**: batch sizes 1, 2, 4, ... up to ``--batch-size`` (stopping at the first out
  of memory, or when two doublings in a row gain < 5%); the throughput and peak memory of the
  fastest.

Each model is measured in a fresh interpreter of its own, so its peak memory is its
own: what torch allocated on a CUDA device (``max_memory_allocated``), on the CPU the
process's peak resident set (``ru_maxrss``: Python, torch and that one model). The device is
stored with the numbers: the GPU's name, or the CPU's model and the threads torch used.
The numbers are stored as a run of dataset ``profile`` (no per-image rows), keyed like every
run by the model, weights and how it ran (device name, precision, TF32, compile, library
versions), so the finder and Compare show them beside timm's published throughput.
"""

from __future__ import annotations

import json
import resource
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from beyond_inet.log import Log
from beyond_inet.models.base import LoadedModel
from beyond_inet.records import (
    PREDICTION_SCHEMA,
    PROFILE_DATASET,
    PROFILE_VIEWS,
    MetricRow,
    RunRecord,
    metrics_frame,
)
from beyond_inet.run.engine import RunSettings, apply_tf32_policy, device_name

if TYPE_CHECKING:
    from beyond_inet.run.plan import PrecomputeConfig


BATCH1, BEST = PROFILE_VIEWS


@dataclass(frozen=True)
class ProfileOptions:
    """How long to measure: at least ``min_seconds`` and ``min_calls`` timed forwards per
    batch size after ``warmup`` untimed ones (batch 1: at least ``latency_calls``, for
    the percentiles); batch sizes up to ``max_batch``."""

    max_batch: int = 256
    warmup: int = 2
    min_calls: int = 3
    latency_calls: int = 20
    min_seconds: float = 0.5

    def identity(self) -> dict[str, object]:
        """The options as recorded with (and keying) the run."""
        return {
            "max_batch": self.max_batch,
            "warmup": self.warmup,
            "min_calls": self.min_calls,
            "latency_calls": self.latency_calls,
            "min_seconds": self.min_seconds,
        }


@dataclass
class Profile:
    """One model's measurements (throughputs in img/s, latencies in ms, memory in MiB)."""

    model: str
    device: str
    precision: str
    input_size: int
    throughput: dict[int, float] = field(default_factory=dict)  # batch size -> img/s
    peak_memory: dict[int, float] = field(default_factory=dict)  # batch size -> MiB
    latency_p50_ms: float = float("nan")
    latency_p95_ms: float = float("nan")
    out_of_memory_at: int | None = None
    seconds: float = 0.0

    @property
    def best_batch(self) -> int:
        return best_batch(self.throughput)

    def metrics(self) -> list[tuple[str, str, float]]:
        """(view, metric, value) rows as stored."""
        b = self.best_batch
        return [
            (BATCH1, "throughput", self.throughput[1]),
            (BATCH1, "latency_p50_ms", self.latency_p50_ms),
            (BATCH1, "latency_p95_ms", self.latency_p95_ms),
            (BATCH1, "peak_memory_mib", self.peak_memory[1]),
            (BEST, "throughput", self.throughput[b]),
            (BEST, "batch_size", float(b)),
            (BEST, "peak_memory_mib", self.peak_memory[b]),
        ]


# --------------------------------------------------------------------------- pure functions


def batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to ``max_batch`` (which is included when not a power of two)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out = [1]
    while out[-1] * 2 <= max_batch:
        out.append(out[-1] * 2)
    return out if out[-1] == max_batch else [*out, max_batch]


def best_batch(throughput: dict[int, float]) -> int:
    """The batch size with the highest throughput (the smaller one on a tie)."""
    if not throughput:
        raise ValueError("no batch size was measured")
    return min(throughput, key=lambda b: (-throughput[b], b))


def saturated(throughput: Sequence[float], gain: float = 0.05, patience: int = 2) -> bool:
    """True when the last ``patience`` measurements each gained less than ``gain`` over the
    best before them (throughput in sweep order): larger batches stop paying."""
    if len(throughput) <= patience:
        return False
    for i in range(len(throughput) - patience, len(throughput)):
        if throughput[i] >= (1 + gain) * max(throughput[:i]):
            return False
    return True


def latency_percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds of per-call times in seconds (linear interpolation)."""
    if not len(seconds):
        raise ValueError("no call was timed")
    p50, p95 = np.percentile(np.asarray(seconds, dtype=np.float64) * 1000.0, [50, 95])
    return float(p50), float(p95)


# --------------------------------------------------------------------------- measuring


def _out_of_memory(e: BaseException) -> bool:
    """True for an allocation failure: CUDA's OutOfMemoryError, or the CPU allocator's
    RuntimeError ("can't allocate memory")."""
    import torch

    text = str(e).lower()
    return (
        isinstance(e, torch.OutOfMemoryError)
        or "can't allocate" in text
        or ("out of memory" in text)
    )


def _peak_rss_mib() -> float:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def profile_model(
    model: LoadedModel, settings: RunSettings, opts: ProfileOptions, log: Log = print
) -> Profile:
    """Measure ``model`` on ``settings.device`` at ``settings.precision`` (see module doc)."""
    import torch

    from beyond_inet.models.contract import logits_of

    apply_tf32_policy(settings.tf32)
    device = torch.device(settings.device)
    cuda = device.type == "cuda"
    module = model.module.to(device).eval()
    if cuda:
        module = module.to(memory_format=torch.channels_last)
    trunk = torch.compile(module.trunk) if settings.compile else None
    size = model.preprocessing.crop_size
    prof = Profile(model.name, device_name(settings.device), settings.precision, size)
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def timed(x: torch.Tensor, calls: int) -> list[float]:
        times: list[float] = []
        while len(times) < calls or sum(times) < opts.min_seconds:
            t0 = time.perf_counter()
            logits_of(module, x, settings.precision, trunk)
            sync()
            times.append(time.perf_counter() - t0)
        return times

    with torch.inference_mode():
        for b in batch_sizes(opts.max_batch):
            x = torch.randn(b, 3, size, size, generator=gen).to(device)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                for _ in range(opts.warmup):
                    logits_of(module, x, settings.precision, trunk)
                sync()
                times = timed(x, opts.latency_calls if b == 1 else opts.min_calls)
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not _out_of_memory(e) or b == 1:
                    raise
                prof.out_of_memory_at = b
                last = max(prof.throughput)
                log(f"  batch {b}: out of memory; the sweep stops at batch {last}")
                break
            finally:
                del x
            prof.throughput[b] = b / float(np.median(times))
            prof.peak_memory[b] = (
                torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mib()
            )
            if b == 1:
                prof.latency_p50_ms, prof.latency_p95_ms = latency_percentiles(times)
            log(f"  batch {b}: {prof.throughput[b]:,.1f} img/s")
            if saturated([prof.throughput[k] for k in sorted(prof.throughput)]):
                break
    prof.seconds = time.perf_counter() - started
    return prof


# --------------------------------------------------------------------------- storing


def profile_metrics(run_id: str, prof: Profile) -> pd.DataFrame:
    """The stored metric rows of one profile (the store's ``metrics`` rows, no intervals)."""
    scored = [(view, MetricRow(metric, float(value))) for view, metric, value in prof.metrics()]
    return metrics_frame(run_id, prof.model, PROFILE_DATASET, scored)


def empty_predictions() -> pa.Table:
    """A profile run has no per-image rows."""
    return PREDICTION_SCHEMA.empty_table()


def profile_settings(model: LoadedModel, settings: RunSettings, opts: ProfileOptions) -> str:
    """The run's ``settings`` JSON: the model's, how it ran, and the sweep's options."""
    return json.dumps(
        {**model.settings, "run": settings.identity(), "profile": opts.identity()},
        default=str,
    )


def _num(v: float | None, width: int, fmt: str = ",.0f") -> str:
    return f"{v:>{width}{fmt}}" if v is not None and np.isfinite(v) else f"{'—':>{width}}"


def format_profiles(profiles: Sequence[Profile], published: dict[str, tuple[float, float]]) -> str:
    """A plain-text table of the profiles beside timm's published throughput (``published``:
    :func:`beyond_inet.catalog.published_throughput`)."""
    head = (
        f"{'model':<36} {'device':<30} {'prec':<5} {'b1 img/s':>9} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'best img/s':>10} {'@batch':>6} {'peak MiB':>9} "
        f"{'timm GPU':>9} {'timm CPU':>9}"
    )
    lines = [head]
    for p in profiles:
        b = p.best_batch
        gpu, cpu = published.get(p.model, (None, None))
        lines.append(
            f"{p.model[:36]:<36} {p.device[:30]:<30} {p.precision:<5} "
            f"{_num(p.throughput[1], 9, ',.1f')} {_num(p.latency_p50_ms, 8, '.2f')} "
            f"{_num(p.latency_p95_ms, 8, '.2f')} {_num(p.throughput[b], 10, ',.1f')} {b:>6} "
            f"{_num(p.peak_memory[b], 9)} {_num(gpu, 9)} {_num(cpu, 9)}"
        )
    lines.append(
        "timm GPU / CPU: timm's published img/s (RTX 4090 with AMP at its batch size; "
        "i7-12700H fp32), by architecture; — where it publishes none."
    )
    return "\n".join(lines)


def profile_record(
    prof: Profile,
    key: str,
    run_id: str,
    settings_json: str,
    started: datetime,
    **provenance: Any,
) -> RunRecord:
    """The stored run row of a profile (started at ``started``, finished now, UTC)."""
    from beyond_inet.run.provenance import utc_now

    now = utc_now()
    return RunRecord(
        run_id=run_id,
        run_key=key,
        dataset=PROFILE_DATASET,
        status="finished",
        views=json.dumps([BATCH1, BEST]),
        settings=settings_json,
        dataset_root=None,
        sample_limit=None,
        n_samples=0,
        n_failed=0,
        failed="[]",
        started_at=started,
        finished_at=now,
        seconds=prof.seconds,
        **provenance,
    )


def host_description(device: str) -> str:
    """The device a profile ran on, as stored and shown: the GPU's name, or on a CPU its
    model name and the threads torch uses (``cpu: AMD EPYC 7B13, 2 threads``)."""
    import platform

    import torch

    name = device_name(device)
    if name != "cpu":
        return name
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    return f"cpu: {model}, {torch.get_num_threads()} threads"


@dataclass
class _ChildResult:
    """What a profiling child process sends back."""

    name: str
    skipped: bool = False
    key: str = ""
    settings_json: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    profile: Profile | None = None
    error: BaseException | None = None


class _Reply:
    """Where a child's result goes: a pickle file the parent reads."""

    def __init__(self, path: str) -> None:
        self.path = path

    def put(self, result: _ChildResult) -> None:
        import pickle

        with open(self.path, "wb") as f:
            pickle.dump(result, f)


def _run_child(name: str, cfg: PrecomputeConfig, opts: ProfileOptions) -> _ChildResult:
    """Profile ``name`` in a fresh interpreter (``python -m beyond_inet.run.profile``; not
    multiprocessing, whose spawn re-runs the parent's ``__main__``); its result, or an error
    when it stops without one."""
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((name, cfg, opts)))
        proc = subprocess.run(
            [sys.executable, "-m", "beyond_inet.run.profile", str(job), str(out)], check=False
        )
        if not out.is_file():
            raise RuntimeError(
                f"profiling {name} stopped without a result (exit code {proc.returncode})."
            )
        return pickle.loads(out.read_bytes())


def _profile_child(name: str, cfg: PrecomputeConfig, opts: ProfileOptions, queue: _Reply) -> None:
    """In a fresh process: load one model, skip it when the store has its profile, else
    measure it; the result (or the error) goes back through ``queue``."""
    import sys
    from dataclasses import replace

    from beyond_inet.run.plan import load_models, run_environment, run_key
    from beyond_inet.run.provenance import model_provenance
    from beyond_inet.store import Store

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    try:
        (model,) = load_models(replace(cfg, models=(name,)), log)
        host = host_description(cfg.run.device)
        key = run_key(
            model,
            PROFILE_DATASET,
            (),
            None,
            run_environment(cfg.run, model),
            content=json.dumps({**opts.identity(), "host": host}, sort_keys=True),
        )
        if not cfg.force and Store(cfg.store).finished_run(key):
            queue.put(_ChildResult(name, skipped=True))
            return
        log(f"profiling {model.name} on {host} ({cfg.run.precision}) ...")
        prof = profile_model(model, cfg.run, opts, log)
        prof.device = host
        provenance = {**model_provenance(cfg, model), "device": host}
        settings_json = profile_settings(model, cfg.run, opts)
        queue.put(_ChildResult(model.name, False, key, settings_json, provenance, prof))
    except BaseException as e:
        queue.put(_ChildResult(name, error=e))


def run_profiles(
    cfg: PrecomputeConfig, opts: ProfileOptions, log: Log = print
) -> tuple[list[Profile], list[str]]:
    """Profile every model of ``cfg``, each in a fresh process of its own (so its peak
    memory is its own: no other model's weights, no earlier model's peak), and store each
    as a ``profile`` run (an existing run with the same key is kept unless ``cfg.force``).
    Returns (the profiles measured, the models skipped because the store has them)."""
    from beyond_inet.models import expand_model_names, resolve_spec
    from beyond_inet.store import Store

    names = expand_model_names(list(cfg.models))
    for n in names:
        resolve_spec(n)  # typos fail before any loading
    store = Store(cfg.store)
    store.check_writable()
    done, skipped = [], []
    from beyond_inet.run.provenance import utc_now

    for name in names:
        started = utc_now()
        result = _run_child(name, cfg, opts)
        if result.error is not None:
            raise result.error
        if result.skipped or result.profile is None:
            skipped.append(name)
            continue
        run_id = uuid.uuid4().hex
        record = profile_record(
            result.profile,
            result.key,
            run_id,
            result.settings_json,
            started,
            **result.provenance,
        )
        store.commit_run(
            record, empty_predictions(), profile_metrics(run_id, result.profile), cfg.force
        )
        done.append(result.profile)
    return done, skipped


if __name__ == "__main__":  # the child of _run_child: python -m beyond_inet.run.profile JOB OUT
    import pickle
    import sys

    from beyond_inet.run import profile as _module  # the importable module's classes pickle

    with open(sys.argv[1], "rb") as _f:
        _name, _cfg, _opts = pickle.loads(_f.read())
    _module._profile_child(_name, _cfg, _opts, _module._Reply(sys.argv[2]))
