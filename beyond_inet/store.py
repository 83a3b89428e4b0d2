"""The one module that owns DuckDB: schema, atomic run commits, read-only queries.

Contract (the dashboard and later evaluations build on it):

* ``runs`` — one row per finished (model, dataset) run with its provenance.
* ``predictions`` — one row per (run, view, image).
* ``metrics`` — long format (run, view, metric, value, 95% bootstrap interval).

Only finished runs are ever written, each in one transaction, so readers never see a
partial run. The writer opens the file only for its short commit window and readers use
short-lived read-only connections; both retry briefly while the other holds the lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR PRIMARY KEY"),
    ("run_key", "VARCHAR NOT NULL"),
    ("model", "VARCHAR NOT NULL"),
    ("model_label", "VARCHAR"),
    ("dataset", "VARCHAR NOT NULL"),
    ("status", "VARCHAR NOT NULL"),
    ("weights", "VARCHAR NOT NULL"),
    ("random_weights", "BOOLEAN NOT NULL"),
    ("preprocessing", "VARCHAR NOT NULL"),
    ("views", "VARCHAR NOT NULL"),
    ("settings", "VARCHAR"),
    ("dataset_root", "VARCHAR"),
    ("sample_limit", "INTEGER"),
    ("n_samples", "INTEGER NOT NULL"),
    ("n_failed", "INTEGER NOT NULL"),
    ("failed", "VARCHAR"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("seconds", "DOUBLE"),
    ("device", "VARCHAR"),
    ("precision", "VARCHAR"),
    ("code_version", "VARCHAR"),
    ("library_versions", "VARCHAR"),
)

PREDICTION_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("model", pa.string()),
    ("dataset", pa.string()),
    ("view", pa.string()),
    ("sample_id", pa.string()),
    ("label", pa.int32()),
    ("pred", pa.int32()),
    ("confidence", pa.float32()),
    ("p_true", pa.float32()),
    ("correct", pa.bool_()),
    ("topk_idx", pa.list_(pa.int32())),
    ("topk_prob", pa.list_(pa.float32())),
    ("decision", pa.string()),
    ("brier", pa.float32()),
])

METRIC_COLUMNS = ("run_id", "model", "dataset", "view", "metric", "value", "ci_low", "ci_high")

_DUCK_TYPES = {
    pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN",
    pa.list_(pa.int32()): "INTEGER[]", pa.list_(pa.float32()): "FLOAT[]",
}

SCHEMA_SQL = [
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{n} {t}" for n, t in RUN_COLUMNS) + ")",
    "CREATE TABLE IF NOT EXISTS predictions ("
    + ", ".join(f"{f.name} {_DUCK_TYPES[f.type]}" for f in PREDICTION_SCHEMA) + ")",
    "CREATE TABLE IF NOT EXISTS metrics (run_id VARCHAR, model VARCHAR, dataset VARCHAR, "
    "view VARCHAR, metric VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE)",
]

DEFAULT_STORE = Path("data") / "results.duckdb"
LOCK_WAIT_SECONDS = 30.0


class StoreLockedError(RuntimeError):
    """The store stayed locked by another process longer than the retry window."""


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg or "conflicting" in msg or "being used" in msg


def _connect(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as e:
            if not _is_lock_error(e) or time.monotonic() > deadline:
                if _is_lock_error(e):
                    raise StoreLockedError(
                        f"The results store {path} is locked by another process ({e}). "
                        "Wait for it to finish or use another --store."
                    ) from e
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Store:
    """A DuckDB results store at ``path`` (created on first write)."""

    def __init__(self, path: Path | str, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.path = Path(path)
        self.lock_wait = lock_wait

    # ---- readers -------------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A short-lived read-only connection, or ``None`` when the store does not exist."""
        if not self.path.is_file():
            yield None
            return
        con = _connect(self.path, read_only=True, wait=self.lock_wait)
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a read-only query with ``?`` parameters; empty frame when there is no store
        or the tables do not exist yet."""
        with self.reader() as con:
            if con is None or not _has_tables(con):
                return pd.DataFrame()
            return con.execute(sql, list(params)).df()

    def finished_run(self, run_key: str) -> str | None:
        """The run_id of a finished run with this key, if any."""
        df = self.query(
            "SELECT run_id FROM runs WHERE run_key = ? AND status = 'finished' "
            "ORDER BY finished_at DESC LIMIT 1",
            [run_key],
        )
        return None if df.empty else str(df["run_id"].iloc[0])

    # ---- writer --------------------------------------------------------------------
    def commit_run(
        self,
        run: dict[str, Any],
        predictions: pa.Table,
        metrics: pd.DataFrame,
        replace: bool = False,
    ) -> bool:
        """Atomically add one finished run (its row, predictions and metrics).

        With ``replace`` every earlier run with the same ``run_key`` is deleted in the same
        transaction. Without it, an existing finished run with that key wins and nothing is
        written (returns False).
        """
        missing = [c for c, _ in RUN_COLUMNS if c not in run]
        if missing:
            raise ValueError(f"run record lacks {missing}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        preds = predictions.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA)
        mets = metrics.loc[:, list(METRIC_COLUMNS)]
        run_df = pd.DataFrame([{c: run[c] for c, _ in RUN_COLUMNS}])
        con = _connect(self.path, read_only=False, wait=self.lock_wait)
        try:
            for sql in SCHEMA_SQL:
                con.execute(sql)
            con.execute("BEGIN TRANSACTION")
            old = con.execute(
                "SELECT run_id FROM runs WHERE run_key = ?", [run["run_key"]]
            ).fetchall()
            if old and not replace:
                con.execute("ROLLBACK")
                return False
            for (rid,) in old:
                for table in ("predictions", "metrics", "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
            con.register("_run_df", run_df)
            con.register("_pred_tbl", preds)
            con.register("_metric_df", mets)
            con.execute("INSERT INTO runs BY NAME SELECT * FROM _run_df")
            con.execute("INSERT INTO predictions BY NAME SELECT * FROM _pred_tbl")
            con.execute("INSERT INTO metrics BY NAME SELECT * FROM _metric_df")
            con.execute("COMMIT")
            return True
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
             .fetchall()}
    return {"runs", "predictions", "metrics"} <= names
