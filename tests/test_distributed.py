"""torchrun with gloo on 2 CPU processes, and --shard / --merge, against one process."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from beyond_inet.run.engine import LogitOutputs, PassResult
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import REPO, TINY_CLIP, TINY_TIMM, write_corrupt_files, write_flat_val

pytestmark = pytest.mark.slow

PRED_KEY = ["model", "dataset", "view", "sample_id"]


def _args(
    data: Path, store: Path, *extra: str, models: str = f"{TINY_TIMM},{TINY_CLIP}"
) -> list[str]:
    return [
        "--model",
        models,
        "--random-weights",
        "--data-root",
        str(data),
        "--store",
        str(store),
        "--workers",
        "0",
        "--quiet",
        "--batch-size",
        "4",
        "--bootstrap",
        "50",
        "--scales",
        "1,1.5",
        "--shifts",
        "30",
        "--resolutions",
        "",
        "--cache-dir",
        str(store.parent / "cache"),
        *extra,
    ]


@dataclass
class Ran:
    returncode: int
    stderr: str


def _precompute(*args: str) -> Ran:
    """One process, in this one (torch.distributed stays off without torchrun's env)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args))
    return Ran(code, err.getvalue())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*args: str) -> list[str]:
    """torchrun on 2 processes, its rendezvous on a free loopback port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "precompute",
        *args,
    ]


def _tables(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = Store(store)
    preds = s.query("SELECT * EXCLUDE (run_id) FROM predictions").sort_values(PRED_KEY)
    mets = s.query("SELECT * EXCLUDE (run_id) FROM metrics").sort_values(
        ["model", "dataset", "view", "metric"]
    )
    return preds.reset_index(drop=True), mets.reset_index(drop=True)


def _same_store(a: Path, b: Path) -> None:
    pa_, ma = _tables(a)
    pb, mb = _tables(b)
    assert len(pa_) == len(pb) > 0
    for c in pa_.columns:
        if pa_[c].dtype.kind == "f":
            np.testing.assert_array_equal(pa_[c], pb[c], err_msg=c)  # bitwise
        else:
            assert pa_[c].astype(str).tolist() == pb[c].astype(str).tolist(), c
    assert ma[["model", "dataset", "view", "metric"]].equals(
        mb[["model", "dataset", "view", "metric"]]
    )
    for c in ("value", "ci_low", "ci_high"):
        np.testing.assert_array_equal(ma[c], mb[c], err_msg=c)
    ra = Store(a).query(
        "SELECT model, dataset, n_samples, n_failed, run_key FROM runs ORDER BY 1, 2"
    )
    rb = Store(b).query(
        "SELECT model, dataset, n_samples, n_failed, run_key FROM runs ORDER BY 1, 2"
    )
    assert ra.equals(rb)
    cols = "model_a, model_b, dataset, view, n_images, only_a, only_b, p_value, accuracy_diff"
    qa = Store(a).query(f"SELECT {cols}, ci_low, kappa FROM paired ORDER BY 1, 2, 3, 4")
    qb = Store(b).query(f"SELECT {cols}, ci_low, kappa FROM paired ORDER BY 1, 2, 3, 4")
    assert len(qa) > 0 and qa.equals(qb)  # the paired comparisons, too


@pytest.fixture(scope="module")
def dist_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    write_flat_val(root / "data" / "imagenet" / "val", 13)  # odd: shards of unequal size
    write_corrupt_files(root / "data" / "imagenet" / "val")
    from tests.conftest import CUE_PAIRS, write_cue_conflict

    write_cue_conflict(root / "data" / "cue-conflict", CUE_PAIRS)
    return root


@pytest.fixture(scope="module")
def single_store(dist_data: Path) -> Path:
    store = dist_data / "single.duckdb"
    r = _precompute(*_args(dist_data / "data", store))
    assert r.returncode == 0, r.stderr
    return store


def test_torchrun_two_processes_equal_one(dist_data: Path, single_store: Path) -> None:
    store = dist_data / "two.duckdb"
    r = subprocess.run(
        _torchrun(*_args(dist_data / "data", store)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _same_store(single_store, store)
    assert not Store(store).staged_runs() and not list(Store(store).staging_dir.glob("pass-*"))
    assert r.stdout.count("imagenet-val") >= 2  # the summary, printed once (rank 0)


def test_shard_then_merge_equals_one_process(dist_data: Path, single_store: Path) -> None:
    store = dist_data / "sharded.duckdb"
    args = _args(dist_data / "data", store)
    first = _precompute(*args, "--shard", "0/2")
    assert first.returncode == 0, first.stderr
    assert "staged shard 0/2" in first.stderr
    early = _precompute(*args, "--merge")
    assert early.returncode == 2 and "missing: 1/2" in early.stderr
    assert Store(store).query("SELECT * FROM runs").empty
    second = _precompute(*args, "--shard", "1/2")
    assert second.returncode == 0, second.stderr
    merged = _precompute(*args, "--merge")
    assert merged.returncode == 0, merged.stderr
    _same_store(single_store, store)
    again = _precompute(*args, "--merge")  # nothing staged any more, all runs stored
    assert again.returncode == 0 and "skip" in again.stderr


def _rank_pid(parent: int, rank: str) -> int | None:
    """The pid of torchrun's worker with ``RANK=rank``."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().split()
            env = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[3]) == parent and f"RANK={rank}".encode() in env:
            return int(p.name)
    return None


def _start_val_job(tmp_path: Path, store: Path) -> tuple[list[str], subprocess.Popen[str]]:
    """(its arguments, a running 2-process torchrun job): the tiny timm model on 40
    generated val images, its stdout / stderr piped."""
    write_flat_val(tmp_path / "data" / "imagenet" / "val", 40)
    args = _args(tmp_path / "data", store, models=TINY_TIMM)
    proc = subprocess.Popen(
        _torchrun(*args, "--dataset", "imagenet-val"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    return args, proc


def test_a_killed_rank_leaves_the_store_unchanged_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    """Rank 1 is SIGKILLed mid-run: in the process group, waiting for rank 0 to load the
    models (a deterministic point: it cannot have staged anything)."""
    store = tmp_path / "killed.duckdb"
    args, proc = _start_val_job(tmp_path, store)
    victim = None
    for line in proc.stderr:
        if line.startswith("loading "):  # rank 0 loads first; rank 1 waits for it
            victim = _rank_pid(proc.pid, "1")
            break
    assert victim is not None, "rank 1 was not found"
    os.kill(victim, signal.SIGKILL)
    rest = proc.stderr.read()
    assert proc.wait(timeout=300) != 0
    assert "rank 1" in rest or "local_rank: 1" in rest or "rank: 1" in rest
    s = Store(store)
    assert (not store.exists()) or s.query("SELECT * FROM runs").empty
    r = subprocess.run(
        _torchrun(*args, "--dataset", "imagenet-val"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = Store(store).query("SELECT model, dataset FROM runs ORDER BY model")
    assert runs["dataset"].tolist() == ["imagenet-val"]
    assert Store(store).query("SELECT count(*) AS n FROM predictions")["n"].iloc[0] > 0
    assert not list(Store(store).staging_dir.glob("pass-*"))  # nothing left behind


def test_an_option_refused_under_torchrun_is_said_once_with_exit_2(tmp_path: Path) -> None:
    """Every rank refuses ``--transfer`` under torchrun (before any model loads); rank 0 says
    it in one line, each worker exits 2. torchrun itself then exits 1 with its own failure
    summary: the launcher's behaviour, which names the workers' exit code."""
    r = subprocess.run(
        _torchrun(*_args(tmp_path, tmp_path / "s.duckdb"), "--transfer", "dtd"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("error: under torchrun")]
    assert len(ours) == 1, r.stderr[-3000:]
    assert "exitcode  : 2" in r.stderr or "exitcode: 2" in r.stderr, r.stderr[-3000:]


def test_a_killed_agent_stops_its_workers(tmp_path: Path) -> None:
    """torchrun's agent is SIGKILLed while its workers run: they notice they are orphaned,
    stop (the Ctrl-C path: rank 0 says why) and store nothing, instead of running on."""
    import threading

    store = tmp_path / "orphan.duckdb"
    _, proc = _start_val_job(tmp_path, store)
    workers = []
    for line in proc.stderr:
        if line.startswith("loading "):  # both ranks are in the job by now
            workers = [_rank_pid(proc.pid, r) for r in ("0", "1")]
            break
    assert all(workers), workers
    os.kill(proc.pid, signal.SIGKILL)
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.append(proc.stderr.read()), daemon=True)
    reader.start()
    reader.join(timeout=120)  # the pipe closes when the last worker has exited
    assert not reader.is_alive(), "the workers outlived their agent"
    # rank 0 says why, unless a collective failed first (gloo: "Connection closed / reset")
    assert "torchrun agent" in rest[0] or "Connection" in rest[0], rest[0][-2000:]
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
    assert (not store.exists()) or Store(store).query("SELECT * FROM runs").empty


def test_the_agent_watch_stops_an_orphaned_rank(tmp_path: Path) -> None:
    """The watch itself, deterministically: a process whose parent is SIGKILLed stops by the
    Ctrl-C path (KeyboardInterrupt) within seconds and says why, instead of running on."""
    import time

    status, err = tmp_path / "status", tmp_path / "err.txt"
    child = (
        "import os, sys, time\n"
        "from beyond_inet.run.distributed import watch_agent\n"
        "watch_agent(os.getppid(), True)\n"
        "print(os.getpid(), flush=True)\n"
        "try:\n"
        "    time.sleep(120)\n"
        f"    open({str(status)!r}, 'w').write('ran on')\n"
        "except KeyboardInterrupt:\n"
        f"    open({str(status)!r}, 'w').write('interrupted')\n"
    )
    parent = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], "
        f"stderr=open({str(err)!r}, 'w'))\n"
        "p.wait()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    int(proc.stdout.readline())  # the child is running, its watch started
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not status.exists():  # polled: the orphan is no longer our child
        assert time.monotonic() < deadline, "the orphaned rank ran on"
        time.sleep(0.05)
    assert status.read_text() == "interrupted"
    assert "torchrun agent" in err.read_text() and "is gone" in err.read_text()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def _pass(index: list[int]) -> PassResult:
    n = len(index)
    out = LogitOutputs(
        np.array(index),
        np.zeros(n, np.int64),
        np.full(n, 0.5),
        np.full(n, 0.5),
        np.zeros((n, 5), np.int64),
        np.full((n, 5), 0.1),
        np.full(n, 0.2),
    )
    return PassResult({("m", "standard"): out}, [], n, 0.1)


def test_merge_orders_by_index_refuses_overlaps_and_ignores_partial_shards(
    tmp_path: Path,
) -> None:
    from beyond_inet.run.shards import ShardsIncompleteError, merge_shards, write_shard

    folder = tmp_path / "pass-x"
    write_shard(folder / "shard-1-of-2", _pass([4, 5, 6, 7]))
    (folder / "shard-0-of-2.partial").mkdir(parents=True)  # a job killed mid-write
    (folder / "shard-0-of-2.partial" / "COMPLETE").write_text("")
    with pytest.raises(ShardsIncompleteError, match="missing: 0/2"):
        merge_shards(folder)
    write_shard(folder / "shard-0-of-2", _pass([0, 1, 2, 3, 8]))
    merged = merge_shards(folder).outputs[("m", "standard")]
    assert merged.index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    write_shard(folder / "shard-0-of-2", _pass([0, 1, 4]))  # overlaps shard 1
    with pytest.raises(ShardsIncompleteError, match="overlap"):
        merge_shards(folder)


def test_a_staged_shard_reads_back_bit_for_bit(tmp_path: Path) -> None:
    """Every field of the engine's outputs, in its own dtype, NaN and -1 included (the
    store's typed columns would turn them into NULLs and float32)."""
    from dataclasses import fields

    from beyond_inet.run.engine import LogitOutputs
    from beyond_inet.run.shards import merge_shards, write_shard

    rng = np.random.default_rng(0)
    n = 6
    values = {
        f.name: rng.normal(size=n).astype(np.float32)
        for f in fields(LogitOutputs)
        if f.name not in ("index", "pred", "topk_idx", "topk_prob", "decision", "pred_full")
    }
    values["brier"] = np.r_[rng.random(n - 1), np.nan]  # float64, unlabelled: NaN
    out = LogitOutputs(
        index=np.arange(n),
        pred=rng.integers(0, 1000, n),
        topk_idx=rng.integers(0, 1000, (n, 5)),
        topk_prob=rng.random((n, 5)).astype(np.float32),
        decision=np.r_[rng.integers(0, 16, n - 1), -1],
        pred_full=rng.integers(0, 1000, n),
        **values,
    )
    write_shard(tmp_path / "pass-x" / "shard-0-of-1", PassResult({("m", "v"): out}, [], n, 0.1))
    back = merge_shards(tmp_path / "pass-x").outputs[("m", "v")]
    for f in fields(LogitOutputs):
        a, b = getattr(out, f.name), getattr(back, f.name)
        assert b.dtype == a.dtype and b.shape == a.shape, f.name
        np.testing.assert_array_equal(b, a, err_msg=f.name)


def _with_logits(index: list[int]) -> PassResult:
    from beyond_inet.run.engine import Features

    result = _pass(index)
    result.logits = {("m", "standard"): Features(np.array(index), np.ones((len(index), 3)))}
    return result


@pytest.mark.parametrize(
    ("damage", "file"),
    [
        ("truncate", "logits-0000.npz"),
        ("random", "logits-0000.npz"),
        ("empty", "logits-0000.npz"),
        ("truncate", "outputs-0000.parquet"),
        ("truncate", "meta.json"),
        ("delete", "outputs-0000.parquet"),
    ],
)
def test_a_damaged_staged_shard_is_a_one_line_error_not_a_partial_run(
    tmp_path: Path, damage: str, file: str
) -> None:
    from beyond_inet.run.shards import ShardsIncompleteError, merge_shards, write_shard

    folder = tmp_path / "pass-x"
    write_shard(folder / "shard-0-of-2", _with_logits([0, 1, 2, 3]))
    write_shard(folder / "shard-1-of-2", _with_logits([4, 5, 6]))
    path = folder / "shard-1-of-2" / file
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()  # its COMPLETE marker stays: the meta's row counts catch it
    with pytest.raises(ShardsIncompleteError, match=r"shard-1-of-2 is damaged .*--shard 1/2"):
        merge_shards(folder)
