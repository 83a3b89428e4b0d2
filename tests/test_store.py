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

from beyond_inet.records import ImageRecords, RunRecord, to_arrow
from beyond_inet.store import Store, StoreLockedError
from tests.conftest import run_record


def _run(run_id: str, key: str = "k1") -> RunRecord:
    return run_record(run_id, run_key=key, n_samples=3)


def _preds(run_id: str, n: int = 3) -> pa.Table:
    p = ImageRecords(
        sample_id=np.array([f"img{i}.JPEG" for i in range(n)], dtype=object),
        label=np.array([1, -1, 3][:n]),
        pred=np.array([1, 2, 0][:n]),
        confidence=np.full(n, 0.5),
        p_true=np.array([0.5, np.nan, 0.1][:n]),
        correct=np.array([True, False, False][:n]),
        topk_idx=np.tile(np.arange(5), (n, 1)),
        topk_prob=np.full((n, 5), 0.1),
        brier=np.array([0.3, np.nan, 0.9][:n]),
    )
    return to_arrow(p, run_id, "m", "imagenet-val", "standard")


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


def _v1_store(path: Path) -> None:
    """A store in the first layout (no ``schema_info``; predictions without ``pred_full``
    and ``factor_value``) holding run ``old``."""
    import duckdb

    from beyond_inet.store import SCHEMA_SQL

    con = duckdb.connect(str(path))
    for sql in SCHEMA_SQL[:3]:
        con.execute(sql)
    con.execute("ALTER TABLE predictions DROP COLUMN pred_full")
    con.execute("ALTER TABLE predictions DROP COLUMN factor_value")
    con.register("r", pd.DataFrame([_run("old", key="k0").row()]))
    con.register("p", _preds("old").drop_columns(["pred_full", "factor_value"]))
    con.execute("INSERT INTO runs BY NAME SELECT * FROM r")
    con.execute("INSERT INTO predictions BY NAME SELECT * FROM p")
    con.close()


def test_an_older_store_is_upgraded_on_the_next_write(tmp_path: Path) -> None:
    from beyond_inet.records import SCHEMA_VERSION

    path = tmp_path / "v1.duckdb"
    _v1_store(path)
    s = Store(path)
    assert len(s.query("SELECT * FROM predictions")) == 3  # readable as it is
    assert s.commit_run(_run("new"), _preds("new"), _metrics("new"))
    assert s.query("SELECT version FROM schema_info")["version"].tolist() == [SCHEMA_VERSION]
    p = s.query("SELECT run_id, pred_full, factor_value FROM predictions ORDER BY run_id")
    assert p["run_id"].tolist() == ["new"] * 3 + ["old"] * 3
    assert p["pred_full"].isna().all() and p["factor_value"].isna().all()
    assert s.commit_run(_run("newer"), _preds("newer"), _metrics("newer"), replace=True)
    assert s.query("SELECT count(*) AS n FROM schema_info")["n"].iloc[0] == 1


def test_a_v2_store_gets_the_cka_tables_on_the_next_write(tmp_path: Path) -> None:
    """Version 2 had no ``cka_runs`` / ``cka``: readers see none; a CKA commit adds them."""
    import duckdb
    import numpy as np

    from beyond_inet.records import SCHEMA_VERSION, cka_cells
    from tests.conftest import cka_record

    path = tmp_path / "v2.duckdb"
    assert Store(path).commit_run(_run("a"), _preds("a"), _metrics("a"))
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE cka")
    con.execute("DROP TABLE cka_runs")
    con.execute("UPDATE schema_info SET version = 2")
    con.close()
    s = Store(path)
    assert not s.has_table("cka_runs") and s.finished_cka("k") is None
    m = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert s.commit_cka(cka_record("c1", "k"), cka_cells("c1", m, ["x", "y"], ["x", "y"]))
    assert s.query("SELECT version FROM schema_info")["version"].tolist() == [SCHEMA_VERSION]
    assert s.finished_cka("k") == "c1"
    assert not s.commit_cka(cka_record("c2", "k"), cka_cells("c2", m, ["x", "y"], ["x", "y"]))
    assert s.commit_cka(
        cka_record("c3", "k"), cka_cells("c3", m, ["x", "y"], ["x", "y"]), replace=True
    )
    cells = s.query("SELECT run_id, cka FROM cka ORDER BY row, col")
    assert set(cells["run_id"]) == {"c3"} and cells["cka"].tolist() == [1.0, 0.5, 0.5, 1.0]
    assert len(s.query("SELECT * FROM runs")) == 1  # the ImageNet runs are untouched


def test_a_newer_store_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import duckdb

    from beyond_inet.store import StoreUnusableError

    path = tmp_path / "v9.duckdb"
    assert Store(path).commit_run(_run("a"), _preds("a"), _metrics("a"))
    con = duckdb.connect(str(path))
    con.execute("UPDATE schema_info SET version = 99")
    con.close()
    for action in (
        lambda: Store(path).query("SELECT * FROM runs"),
        lambda: Store(path).commit_run(_run("b", "k2"), _preds("b"), _metrics("b")),
        lambda: Store(path).check_writable(),  # precompute's preflight, before any work
    ):
        with pytest.raises(StoreUnusableError, match="layout version 99, newer") as e:
            action()
        assert "Upgrade beyond-inet" in str(e.value)
    con = duckdb.connect(str(path), read_only=True)  # the store itself is untouched
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    con.close()


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
