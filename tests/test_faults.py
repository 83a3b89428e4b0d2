"""Faults and bad input: busy readers, locks, two writers, bad stores, Ctrl-C, bad values.

Every case ends in either a committed run or a one-line message, and never in a lost run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pandas.testing as pd_testing
import pytest

from beyond_inet.run.commit import commit_staged_runs
from beyond_inet.store import Store, StoreUnusableError
from precompute.cli import main
from tests.conftest import REPO, TINY_TIMM, write_cue_conflict
from tests.test_store import _metrics, _preds, _run

SMOKE = [
    "--model",
    TINY_TIMM,
    "--random-weights",
    "--workers",
    "0",
    "--bootstrap",
    "0",
    "--quiet",
    "--no-invariance",
    "--dataset",
    "cue-conflict",
]

READ_LOOP = """
import sys, time
from beyond_inet.store import Store, StoreLockedError
s = Store(sys.argv[1], lock_wait=10)
print("reading", flush=True)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    try:
        s.query("SELECT count(*) FROM predictions")
        n += 1
    except StoreLockedError:
        pass
print(n, flush=True)
"""


def test_busy_readers_cannot_lock_the_writer_out(tmp_path: Path) -> None:
    """Three dashboards reading in tight loops: every commit still lands within its wait."""
    s = Store(tmp_path / "r.duckdb", lock_wait=3.0)
    s.commit_run(_run("a", key="k0"), _preds("a"), _metrics("a"))
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READ_LOOP, str(s.path), "8"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for r in readers:
            assert r.stdout is not None and r.stdout.readline().strip() == "reading"
        for i in range(4):
            assert s.commit_run(_run(f"b{i}", key=f"k{i + 1}"), _preds(f"b{i}"), _metrics(f"b{i}"))
    finally:
        counts = [int(r.communicate(timeout=60)[0].strip()) for r in readers]
    assert all(c > 0 for c in counts)  # the readers did read meanwhile
    assert len(s.query("SELECT run_id FROM runs")) == 5
    assert not list(tmp_path.glob("r.duckdb.writer.*"))  # no intent left behind


HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""


def test_a_computed_run_waits_staged_until_the_lock_is_free(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.duckdb", lock_wait=0.3)
    s.commit_run(_run("a", key="k0"), _preds("a"), _metrics("a"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(s.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    logs: list[str] = []
    staged = threading.Event()

    def log(m: str) -> None:
        logs.append(m)
        if s.staged_runs():
            staged.set()

    result: list[bool] = []
    writer = threading.Thread(
        target=lambda: result.append(
            s.commit_persistently(_run("b"), _preds("b"), _metrics("b"), False, log)
        )
    )
    writer.start()
    assert staged.wait(60)  # locked: the run is on disk and the writer keeps trying
    assert any("staged" in m and "waiting" in m for m in logs)
    holder.stdin.write("go\n")
    holder.stdin.flush()
    writer.join(60)
    holder.wait(10)
    assert result == [True]
    assert sorted(s.query("SELECT run_id FROM runs")["run_id"]) == ["a", "b"]
    assert s.staged_runs() == []


def test_runs_staged_by_an_interrupted_writer_are_committed_next_time(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.duckdb")
    s.stage_run(_run("a"), _preds("a"), _metrics("a"))
    partial = s.staging_dir / "zz.partial"  # an interrupted staging: never a run
    partial.mkdir()
    logs: list[str] = []
    commit_staged_runs(s, logs.append)
    assert s.query("SELECT run_id FROM runs")["run_id"].tolist() == ["a"]
    assert len(s.query("SELECT * FROM predictions")) == 3
    assert "stored m on imagenet-val" in logs[0] and s.staged_runs() == []


def test_a_second_writer_of_the_same_run_says_it_was_not_stored(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "r.duckdb"
    argv = [*SMOKE, "--data-root", str(data_root), "--store", str(store)]
    assert main(argv) == 0
    capsys.readouterr()
    # the other writer decided "not done yet" before the first one committed
    monkeypatch.setattr(Store, "finished_run", lambda self, key: None)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "not stored" in captured.err and "another process stored the same run" in captured.err
    assert "stored timm:test_vit on cue-conflict" not in captured.err
    assert " exists " in captured.out  # the summary says so too
    assert len(Store(store).query("SELECT * FROM runs")) == 1


@pytest.mark.parametrize("kind", ["folder", "under a file", "unwritable folder", "not duckdb"])
def test_a_bad_store_is_refused_before_any_work(
    kind: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {
        "folder": tmp_path,
        "under a file": Path("/dev/null/x.duckdb"),
        "unwritable folder": Path("/proc/x.duckdb"),
        "not duckdb": tmp_path / "n.txt",
    }
    (tmp_path / "n.txt").write_text("notes")
    assert main([*SMOKE, "--data-root", str(data_root), "--store", str(paths[kind])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--store" in err
    assert "loading" not in err  # nothing was loaded or computed first
    assert (tmp_path / "n.txt").read_text() == "notes"


def test_check_writable_does_not_create_the_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "new" / "r.duckdb")
    s.check_writable()
    assert (tmp_path / "new").is_dir() and not s.path.exists()
    with pytest.raises(StoreUnusableError, match="is a folder"):
        Store(tmp_path).check_writable()


def test_ctrl_c_is_one_line_and_stores_nothing(
    data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import beyond_inet.run.pipeline as pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_pass", interrupted)
    store = tmp_path / "r.duckdb"
    assert main([*SMOKE, "--data-root", str(data_root), "--store", str(store)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; nothing partial was stored." in err and "Traceback" not in err
    assert Store(store).query("SELECT * FROM runs").empty


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-3", "abc"])
def test_a_bad_logit_scale_is_an_argument_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--model", "vit_clip", f"--logit-scale={value}"])
    assert e.value.code == 2
    assert "--logit-scale: must be a finite number > 0" in capsys.readouterr().err


def test_another_folder_of_the_same_dataset_is_another_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skip-if-done looks at which files were evaluated, not only at the settings."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_cue_conflict(a / "cue-conflict", [("cat", "dog"), ("dog", "cat")])
    write_cue_conflict(b / "cue-conflict", [("cat", "dog"), ("dog", "cat"), ("car", "oven")])
    store = tmp_path / "r.duckdb"
    for root in (a, b, a):
        assert main([*SMOKE, "--data-root", str(root), "--store", str(store)]) == 0
    err = capsys.readouterr().err
    assert err.count("skip timm:test_vit on cue-conflict") == 1  # only the third run
    runs = Store(store).query("SELECT n_samples FROM runs ORDER BY n_samples")
    assert runs["n_samples"].tolist() == [2, 3]


def test_the_cli_answers_without_importing_the_model_libraries(tmp_path: Path) -> None:
    """--help, --list-datasets (with datasets found) and argument errors never import torch,
    timm, open_clip or scipy (their import alone takes seconds; ``benchmarks/bench_cli.py``
    times it)."""
    write_cue_conflict(tmp_path / "cue-conflict", [("cat", "dog")])
    val = tmp_path / "imagenet" / "val" / "n01440764"
    val.mkdir(parents=True)
    (val / "a.JPEG").write_bytes((tmp_path / "cue-conflict" / "cat" / "cat1-dog2.png").read_bytes())
    code = (
        "import sys\nfrom precompute.cli import main\n"
        "for argv in (['--help'], ['--list-datasets', '--data-root', sys.argv[1]],"
        " ['--scales', 'x']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'timm', 'open_clip', 'torchvision', 'scipy') "
        "if m in sys.modules]\nprint('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "imagenet-val     found    1" in out.stdout


def test_normal_output_has_no_stray_library_warnings(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """open_clip logs 'No pretrained weights loaded' on the root logger for random init;
    precompute says it itself (one 'warning:' line), never as 'WARNING:root:'."""
    clip = ["--model", "open_clip:test-tiny-clip", *SMOKE[2:]]
    assert main([*clip, "--data-root", str(data_root), "--store", str(tmp_path / "r.duckdb")]) == 0
    err = capsys.readouterr().err
    assert "WARNING:root" not in err and "No pretrained weights loaded" not in err
    assert "open_clip:test-tiny-clip has RANDOM weights" in err


def test_a_real_ctrl_c_in_the_terminal_is_one_line(tmp_path: Path) -> None:
    """SIGINT to the whole process group (what a terminal's Ctrl-C does, DataLoader workers
    included) ends with exit 130, one message and no traceback; nothing is stored."""
    import os
    import signal

    pairs = [("cat", "dog"), ("car", "clock"), ("bear", "knife"), ("oven", "truck")] * 60
    write_cue_conflict(tmp_path / "data" / "cue-conflict", pairs)
    store = tmp_path / "r.duckdb"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "precompute",
            *SMOKE,
            "--workers",
            "2",
            "--batch-size",
            "8",
            "--data-root",
            str(tmp_path / "data"),
            "--store",
            str(store),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # interrupt once the model is loaded: the pass is under way
        if "RANDOM weights" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; nothing partial was stored." in err and "Traceback" not in err
    assert Store(store).query("SELECT * FROM runs").empty


# ---------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shard", "-1/2"], "expected I/N with 0 <= I < N, got '-1/2'"),
        (["--batch-size", "many"], "argument --batch-size"),
        (["--transfer", ""], "--transfer needs task names"),
        (["--cka", "all"], "not a group such as 'all'"),
        (["--cka", "deit3_2k"], "Did you mean 'deit3_21k'"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_work(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = None
    try:
        code = main(["--model", "timm:test_vit", "--store", str(tmp_path / "s.duckdb"), *argv])
    except SystemExit as e:  # argparse's own errors exit through SystemExit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err
    assert not (tmp_path / "s.duckdb").exists()  # nothing loaded, nothing written


def test_a_staging_path_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "r.duckdb"
    staging = Path(f"{store}.staging")
    staging.write_text("not a folder")
    root = tmp_path / "data"
    write_cue_conflict(root / "cue-conflict", [("cat", "dog")])
    args = ["--model", "timm:test_vit", "--random-weights", "--data-root", str(root)]
    assert main([*args, "--store", str(store), "--shard", "0/2", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert staging.read_text() == "not a folder"  # nothing lost


def test_a_run_staged_by_an_older_version_commits_with_its_missing_columns_null(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "old.duckdb")
    older = _preds("r-old").drop_columns(["confidence_ts", "p_true_ts", "brier_ts"])
    folder = store.stage_run(_run("r-old"), older, _metrics("r-old"))
    meta = folder / "run.json"
    staged = json.loads(meta.read_text())
    staged["run"]["retired_field"] = "from an older record"  # extra keys are ignored too
    meta.write_text(json.dumps(staged))
    notes: list[str] = []
    commit_staged_runs(store, notes.append)
    assert any("stored m on imagenet-val" in n for n in notes), notes
    p = store.query("SELECT sample_id, confidence_ts FROM predictions ORDER BY sample_id")
    assert len(p) == 3 and p["confidence_ts"].isna().all()
    assert not store.staged_runs()


def test_shards_staged_by_another_version_are_refused(tmp_path: Path) -> None:
    from beyond_inet.run.shards import ShardsIncompleteError, merge_shards, write_shard
    from tests.test_distributed import _pass

    folder = tmp_path / "pass-x"
    shard = write_shard(folder / "shard-0-of-1", _pass([0, 1]))
    meta = json.loads((shard / "meta.json").read_text())
    del meta["format"]  # as the previous layout wrote it
    (shard / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ShardsIncompleteError, match="staged by another version"):
        merge_shards(folder)


def test_paired_comparisons_lost_to_an_interruption_are_redone(tmp_path: Path) -> None:
    import duckdb

    root = tmp_path / "data"
    write_cue_conflict(root / "cue-conflict", [("cat", "dog"), ("dog", "cat"), ("car", "oven")])
    store = Store(tmp_path / "p.duckdb")
    args = ["--model", f"{TINY_TIMM},open_clip:test-tiny-clip", "--random-weights"]
    args += ["--data-root", str(root), "--store", str(store.path), "--quiet", "--workers", "0"]
    assert main(args) == 0
    first = store.query("SELECT * EXCLUDE (run_a, run_b) FROM paired")
    assert len(first) == 1

    def forget(sql: str) -> None:  # what a kill between the commits leaves behind
        with duckdb.connect(str(store.path)) as con:
            con.execute(sql)

    # both runs stored, the paired row not: the rerun (nothing to evaluate) restores it
    forget("DELETE FROM paired")
    assert main(args) == 0
    again = store.query("SELECT * EXCLUDE (run_a, run_b) FROM paired")
    pd_testing.assert_frame_equal(again, first)
    # the first run stored, the second not: the rerun evaluates it and pairs it with the first
    forget(
        "DELETE FROM predictions WHERE model = 'open_clip:test-tiny-clip'; "
        "DELETE FROM metrics WHERE model = 'open_clip:test-tiny-clip'; "
        "DELETE FROM runs WHERE model = 'open_clip:test-tiny-clip'; DELETE FROM paired"
    )
    assert main(args) == 0
    third = store.query("SELECT * EXCLUDE (run_a, run_b) FROM paired")
    assert third[["model_a", "model_b", "view", "both_right", "only_a", "only_b"]].equals(
        first[["model_a", "model_b", "view", "both_right", "only_a", "only_b"]]
    )
