"""The DuckDB store: atomic run commits, replace, read-only readers, lock retry."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from beyond_inet.evaluations import ViewPredictions
from beyond_inet.pipeline import prediction_table
from beyond_inet.store import RUN_COLUMNS, Store, StoreLockedError


def _run(run_id: str, key: str = "k1") -> dict:
    row = {c: None for c, _ in RUN_COLUMNS}
    row.update(
        run_id=run_id,
        run_key=key,
        model="m",
        dataset="imagenet-val",
        status="finished",
        weights="random",
        random_weights=True,
        preprocessing="{}",
        views='["standard"]',
        n_samples=3,
        n_failed=0,
    )
    return row


def _preds(run_id: str, n: int = 3) -> pa.Table:
    p = ViewPredictions(
        sample_ids=np.array([f"img{i}.JPEG" for i in range(n)], dtype=object),
        labels=np.array([1, -1, 3][:n]),
        pred=np.array([1, 2, 0][:n]),
        confidence=np.full(n, 0.5),
        p_true=np.array([0.5, np.nan, 0.1][:n]),
        correct=np.array([True, False, False][:n]),
        topk_idx=np.tile(np.arange(5), (n, 1)),
        topk_prob=np.full((n, 5), 0.1),
        brier=np.array([0.3, np.nan, 0.9][:n]),
    )
    return prediction_table(run_id, "m", "imagenet-val", "standard", p)


def _metrics(run_id: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run_id": run_id,
                "model": "m",
                "dataset": "imagenet-val",
                "view": "standard",
                "metric": "top1",
                "value": 1 / 3,
                "ci_low": 0.0,
                "ci_high": 1.0,
            }
        ]
    )


def test_missing_store_reads_as_empty(tmp_path: Path) -> None:
    s = Store(tmp_path / "none.duckdb")
    assert s.query("SELECT * FROM runs").empty
    assert s.finished_run("k1") is None
    assert not (tmp_path / "none.duckdb").exists()  # readers never create the file


def test_commit_then_skip_then_replace(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.duckdb")
    assert s.commit_run(_run("a"), _preds("a"), _metrics("a"))
    assert s.finished_run("k1") == "a"
    assert not s.commit_run(_run("b"), _preds("b"), _metrics("b"))  # same key: first one wins
    assert s.commit_run(_run("c"), _preds("c"), _metrics("c"), replace=True)
    counts = s.query("SELECT run_id, count(*) AS n FROM predictions GROUP BY run_id")
    assert counts.to_dict("records") == [{"run_id": "c", "n": 3}]
    assert s.query("SELECT run_id FROM runs")["run_id"].tolist() == ["c"]
    assert s.query("SELECT count(*) AS n FROM metrics")["n"].iloc[0] == 1
    row = s.query(
        "SELECT label, p_true, topk_idx, brier FROM predictions WHERE sample_id = ?", ["img1.JPEG"]
    ).iloc[0]
    assert pd.isna(row["label"]) and pd.isna(row["p_true"]) and pd.isna(row["brier"])
    assert list(row["topk_idx"]) == [0, 1, 2, 3, 4]


def test_failed_commit_leaves_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.duckdb")
    s.commit_run(_run("a", key="k0"), _preds("a"), _metrics("a"))
    bad = _metrics("b").assign(value="not a number")
    with pytest.raises(Exception):  # noqa: B017 - any conversion error
        s.commit_run(_run("b"), _preds("b"), bad)
    assert s.query("SELECT DISTINCT run_id FROM predictions")["run_id"].tolist() == ["a"]
    assert s.query("SELECT run_id FROM runs")["run_id"].tolist() == ["a"]


HOLD_READ_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("locked", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
"""


def test_writer_waits_for_a_reader_in_another_process(tmp_path: Path) -> None:
    """A dashboard holding a read-only connection delays a commit; it never fails it."""
    s = Store(tmp_path / "r.duckdb")
    s.commit_run(_run("a", key="k0"), _preds("a"), _metrics("a"))
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_LOCK, str(s.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdin is not None
    assert reader.stdout.readline().strip() == "locked"
    with pytest.raises(StoreLockedError, match="locked by another process"):
        Store(s.path, lock_wait=0).commit_run(_run("x"), _preds("x"), _metrics("x"))
    result: list[object] = []
    writer = threading.Thread(
        target=lambda: result.append(s.commit_run(_run("b"), _preds("b"), _metrics("b")))
    )
    writer.start()  # retries while the reader holds the file
    reader.stdin.write("go\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "released"
    writer.join()
    reader.wait()
    assert result == [True]
    assert sorted(s.query("SELECT run_id FROM runs")["run_id"]) == ["a", "b"]


def test_a_read_session_shares_one_connection_and_yields_to_a_writer(
    tmp_path: Path, monkeypatch
) -> None:
    import duckdb

    from beyond_inet import store as store_module

    s = Store(tmp_path / "r.duckdb")
    s.commit_run(_run("a", key="k0"), _preds("a"), _metrics("a"))
    opened: list[bool] = []
    real = duckdb.connect

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(bool(kwargs.get("read_only")))
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module.duckdb, "connect", counting)
    with store_module.read_session():
        for _ in range(3):
            assert len(s.query("SELECT * FROM runs")) == 1
        assert opened == [True]  # one connection for the whole session
        answers = iter([True])  # a writer says it waits, once, then it is done
        monkeypatch.setattr(Store, "writer_waiting", lambda self: next(answers, False))
        s.query("SELECT * FROM runs")  # the shared connection is released, then reopened
        assert opened == [True, True]
    monkeypatch.undo()
    # after the session nothing is held: a writer gets the lock at once
    assert Store(s.path, lock_wait=0).commit_run(_run("b"), _preds("b"), _metrics("b"))
