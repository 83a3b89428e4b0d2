"""The one module that owns DuckDB: schema, atomic run commits, staging, read-only queries.

Contract (the dashboard and later evaluations build on it):

* ``runs`` — one row per finished (model, dataset) run with its provenance.
* ``predictions`` — one row per (run, view, image).
* ``metrics`` — long format (run, view, metric, value, 95% bootstrap interval).
* ``cka_runs`` / ``cka`` — one row per finished CKA run; its layer x layer cells.
* ``paired`` — paired comparisons of the runs of one pass (two models, one view).

Only finished runs are ever written, each in one transaction, so readers never see a
partial run. The writer opens the file only for its short commit window; readers use
short-lived read-only connections. While a writer waits for the lock it leaves an intent
file (``<store>.writer.<pid>``) and readers hold back until it has committed, so a busy dashboard
cannot starve a commit. A computed run that cannot be committed yet is staged as Parquet
(``<store>.staging/<run_id>/``) and committed by the next writer if this one is stopped.

No other module imports duckdb: every DuckDB failure leaves here as a :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from beyond_inet.log import Log
from beyond_inet.records import (
    CKA_RUN_COLUMNS,
    CKA_SCHEMA,
    METRIC_COLUMNS,
    PAIRED_COLUMNS,
    PREDICTION_SCHEMA,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    CkaRunRecord,
    PairedRecord,
    RunRecord,
)
from beyond_inet.settings import LOCK_WAIT_SECONDS

__all__ = [
    "LOCK_WAIT_SECONDS",
    "METRIC_COLUMNS",
    "PREDICTION_SCHEMA",
    "RUN_COLUMNS",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreUnusableError",
]

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.float32(): "FLOAT",
    pa.bool_(): "BOOLEAN",
    pa.list_(pa.int32()): "INTEGER[]",
    pa.list_(pa.float32()): "FLOAT[]",
}

SCHEMA_SQL = [
    "CREATE TABLE IF NOT EXISTS runs (" + ", ".join(f"{n} {t}" for n, t in RUN_COLUMNS) + ")",
    "CREATE TABLE IF NOT EXISTS predictions ("
    + ", ".join(f"{f.name} {_DUCK_TYPES[f.type]}" for f in PREDICTION_SCHEMA)
    + ")",
    "CREATE TABLE IF NOT EXISTS metrics (run_id VARCHAR, model VARCHAR, dataset VARCHAR, "
    "view VARCHAR, metric VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE)",
    "CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cka_runs ("
    + ", ".join(f"{n} {t}" for n, t in CKA_RUN_COLUMNS)
    + ")",
    "CREATE TABLE IF NOT EXISTS cka ("
    + ", ".join(f"{f.name} {_DUCK_TYPES[f.type]}" for f in CKA_SCHEMA)
    + ")",
    "CREATE TABLE IF NOT EXISTS paired (" + ", ".join(f"{n} {t}" for n, t in PAIRED_COLUMNS) + ")",
]

#: How a store of an older layout is brought to the next version (version -> statements).
MIGRATIONS: dict[int, list[str]] = {
    1: [  # v1 (no schema_info): predictions lacked the two optional per-image columns
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS pred_full INTEGER",
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS factor_value VARCHAR",
    ],
    2: [],  # v2 -> v3: the cka_runs and cka tables (created by SCHEMA_SQL)
    3: [  # v3 -> v4: calibration after temperature scaling; the paired table (SCHEMA_SQL)
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS confidence_ts FLOAT",
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS p_true_ts FLOAT",
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS brier_ts FLOAT",
    ],
    4: [  # v4 -> v5: the logit scores OOD detection uses (NULL for older runs)
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS max_logit FLOAT",
        "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS logsumexp FLOAT",
    ],
}

#: A writer's intent file older than this (not refreshed) is stale: readers ignore it.
INTENT_STALE_SECONDS = 60.0
_POLL = 0.02


#: Read-only connections shared within one :func:`read_session` (path -> connection).
_SESSION: contextvars.ContextVar[dict[str, duckdb.DuckDBPyConnection] | None] = (
    contextvars.ContextVar("beyond_inet_read_session", default=None)
)


@contextlib.contextmanager
def read_session() -> Iterator[None]:
    """Within this block every :meth:`Store.reader` of a store reuses one read-only
    connection (opening one costs ~30 ms on a large store), closed when the block ends —
    e.g. one dashboard page run. A writer waiting for the lock makes the next reader close
    the shared connection first, so a session never holds a writer back for long."""
    if _SESSION.get() is not None:  # nested: the outer session owns the connections
        yield
        return
    token = _SESSION.set({})
    try:
        yield
    finally:
        for con in (_SESSION.get() or {}).values():
            with contextlib.suppress(Exception):
                con.close()
        _SESSION.reset(token)


def _conform_predictions(table: pa.Table) -> pa.Table:
    """A staged run's predictions in today's layout: a column added since it was staged (by
    an older beyond-inet, e.g. the ``*_ts`` ones) is NULL, as in a migrated store."""
    have = set(table.column_names)
    cols = [
        table.column(f.name).cast(f.type) if f.name in have else pa.nulls(len(table), f.type)
        for f in PREDICTION_SCHEMA
    ]
    return pa.Table.from_arrays(cols, schema=PREDICTION_SCHEMA)


class StoreError(RuntimeError):
    """The results store cannot be read or written (the message says why and what to do)."""


class StoreLockedError(StoreError):
    """The store stayed locked by another process longer than the retry window."""


class StoreUnusableError(StoreError):
    """The store path cannot hold a results store (a folder, not DuckDB, not writable)."""


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg or "conflicting" in msg or "being used" in msg


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """A DuckDB results store at ``path`` (created on first write)."""

    def __init__(self, path: Path | str, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.path = Path(path)
        self.lock_wait = lock_wait

    # ---- paths ---------------------------------------------------------------------
    @property
    def intent_path(self) -> Path:
        """This process's intent file: present while it waits for / holds the write lock."""
        return Path(f"{self.path}.writer.{os.getpid()}")

    @property
    def staging_dir(self) -> Path:
        """Where computed runs wait (as Parquet) until they are committed."""
        return Path(f"{self.path}.staging")

    # ---- connections ---------------------------------------------------------------
    def _connect(self, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + wait
        while True:
            if read_only:
                self._wait_for_writer(deadline)
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as e:
                if _is_lock_error(e):
                    if time.monotonic() <= deadline:
                        time.sleep(_POLL)
                        continue
                    raise StoreLockedError(
                        f"The results store {self.path} is locked by another process "
                        f"({_first_line(e)}). Wait for it to finish or use another --store."
                    ) from e
                raise self._unusable(e) from e
            except duckdb.Error as e:
                raise self._unusable(e) from e

    def _unusable(self, e: BaseException) -> StoreUnusableError:
        return StoreUnusableError(
            f"The results store {self.path} cannot be opened: {_first_line(e)}. Is it a "
            "DuckDB file written by beyond-inet? If not, pass another --store."
        )

    def writer_waiting(self) -> bool:
        """True while another live process has declared it is committing (a fresh
        ``<store>.writer.<pid>`` file)."""
        now = time.time()
        for f in self.path.parent.glob(f"{glob.escape(self.path.name)}.writer.*"):
            try:
                pid = int(f.name.rsplit(".", 1)[1])
                fresh = now - f.stat().st_mtime <= INTENT_STALE_SECONDS
            except (OSError, ValueError):
                continue
            if pid != os.getpid() and fresh and _pid_alive(pid):
                return True
        return False

    def _wait_for_writer(self, deadline: float) -> None:
        while self.writer_waiting():
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"The results store {self.path} is being written (precompute is "
                    "committing a run). Try again in a moment."
                )
            time.sleep(_POLL)

    @contextlib.contextmanager
    def _intent(self) -> Iterator[None]:
        """Declare a pending write so readers step aside."""
        self.intent_path.parent.mkdir(parents=True, exist_ok=True)
        self.intent_path.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                self.intent_path.unlink()

    # ---- readers -------------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A short-lived read-only connection (the :func:`read_session`'s, when one is
        open), or ``None`` when the store does not exist."""
        if not self.path.is_file():
            yield None
            return
        shared = _SESSION.get()
        key = str(self.path.resolve())
        con = None if shared is None else shared.get(key)
        if con is not None and self.writer_waiting():
            con.close()
            con = shared.pop(key)  # type: ignore[union-attr]
            con = None
        if con is None:
            con = self._connect(read_only=True, wait=self.lock_wait)
            version = schema_version(con)
            if version > SCHEMA_VERSION:
                con.close()
                raise _newer(self.path, version)
            if shared is not None:
                shared[key] = con
        try:
            yield con
        except duckdb.Error as e:
            raise StoreError(f"Query on {self.path} failed: {_first_line(e)}") from e
        finally:
            if shared is None:
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

    def run_settings(self, run_key: str) -> dict[str, Any]:
        """The settings (parsed JSON) of the latest finished run with this key; ``{}`` when
        there is none or they do not parse."""
        df = self.query(
            "SELECT settings FROM runs WHERE run_key = ? AND status = 'finished' "
            "ORDER BY finished_at DESC LIMIT 1",
            [run_key],
        )
        if df.empty:
            return {}
        try:
            parsed = json.loads(str(df["settings"].iloc[0]))
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    # ---- writer --------------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail now, before any work, when results could not be written here.

        Creates the store's folder when absent, but not the store: a probe file checks the
        folder is writable. An existing store must open read-write (one locked by another
        writer passes: the commit waits for it later).
        """
        if self.path.is_dir():
            raise StoreUnusableError(
                f"--store {self.path} is a folder; give a file path such as "
                f"{self.path / 'results.duckdb'}."
            )
        if self.staging_dir.exists() and not self.staging_dir.is_dir():
            raise StoreUnusableError(
                f"{self.staging_dir} (where runs are staged next to --store {self.path}) is a "
                "file, not a folder: move it away or pass another --store."
            )
        blocking = next((p for p in self.path.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise StoreUnusableError(
                f"--store {self.path}: {blocking} is a file, not a folder. Pass a --store in "
                "a writable folder."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnusableError(
                f"Cannot create the folder of --store {self.path}: {e.strerror or e}. "
                "Pass a --store in a writable folder."
            ) from None
        if not self.path.exists():
            probe = self.path.with_name(f".{self.path.name}.probe.{os.getpid()}")
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as e:
                raise StoreUnusableError(
                    f"Cannot write in the folder of --store {self.path}: {e.strerror or e}. "
                    "Pass a --store in a writable folder."
                ) from None
            return
        if not os.access(self.path, os.W_OK):
            raise StoreUnusableError(
                f"--store {self.path} is not writable. Pass a --store you can write."
            )
        try:
            con = self._connect(read_only=False, wait=0)
        except StoreLockedError:
            return
        try:
            version = schema_version(con)
        finally:
            con.close()
        if version > SCHEMA_VERSION:
            raise _newer(self.path, version)

    def commit_run(
        self,
        run: RunRecord,
        predictions: pa.Table,
        metrics: pd.DataFrame,
        replace: bool = False,
        wait: float | None = None,
    ) -> bool:
        """Atomically add one finished run (its row, predictions and metrics).

        With ``replace`` every earlier run with the same ``run_key`` is deleted in the same
        transaction. Without it, an existing finished run with that key wins and nothing is
        written (returns False). Waits up to ``wait`` (default ``lock_wait``) seconds for
        the lock, then raises :class:`StoreLockedError`.
        """
        preds = predictions.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA)
        mets = metrics.loc[:, list(METRIC_COLUMNS)]
        run_df = pd.DataFrame([run.row()])
        with self._transaction(wait, f"run of {run.model} on {run.dataset}") as con:
            old = con.execute("SELECT run_id FROM runs WHERE run_key = ?", [run.run_key]).fetchall()
            if old and not replace:
                return False
            for (rid,) in old:
                for table in ("predictions", "metrics", "runs"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
                con.execute("DELETE FROM paired WHERE run_a = ? OR run_b = ?", [rid, rid])
            con.register("_run_df", run_df)
            con.register("_pred_tbl", preds)
            con.register("_metric_df", mets)
            con.execute("INSERT INTO runs BY NAME SELECT * FROM _run_df")
            con.execute("INSERT INTO predictions BY NAME SELECT * FROM _pred_tbl")
            con.execute("INSERT INTO metrics BY NAME SELECT * FROM _metric_df")
            return True

    def commit_cka(
        self, run: CkaRunRecord, cells: pa.Table, replace: bool = False, log: Log = print
    ) -> bool:
        """Atomically add one finished CKA run (its row and layer x layer cells); like
        :meth:`commit_run`, an existing run with the same key wins unless ``replace``. A
        locked store is waited for (with a line per retry window)."""
        cells = cells.select(CKA_SCHEMA.names).cast(CKA_SCHEMA)
        run_df = pd.DataFrame([run.row()])
        while True:
            try:
                with self._transaction(None, f"CKA run {run.model_a} x {run.model_b}") as con:
                    old = con.execute(
                        "SELECT run_id FROM cka_runs WHERE run_key = ?", [run.run_key]
                    ).fetchall()
                    if old and not replace:
                        return False
                    for (rid,) in old:
                        for table in ("cka", "cka_runs"):
                            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [rid])
                    con.register("_run_df", run_df)
                    con.register("_cells", cells)
                    con.execute("INSERT INTO cka_runs BY NAME SELECT * FROM _run_df")
                    con.execute("INSERT INTO cka BY NAME SELECT * FROM _cells")
                    return True
            except StoreLockedError:
                log(f"waiting: {self.path} is locked by another process (Ctrl-C stops) ...")

    def commit_paired(self, records: Sequence[PairedRecord], log: Log = print) -> None:
        """Atomically add paired comparisons, replacing earlier ones of the same runs and
        view; only comparisons of runs still in the store are kept. A locked store is
        waited for (with a line per retry window)."""
        if not records:
            return
        df = pd.DataFrame([r.row() for r in records])
        while True:
            try:
                with self._transaction(None, "paired comparisons") as con:
                    con.register("_paired_df", df)
                    con.execute(
                        "DELETE FROM paired p USING _paired_df d WHERE p.run_a = d.run_a "
                        "AND p.run_b = d.run_b AND p.view = d.view"
                    )
                    con.execute(
                        "INSERT INTO paired BY NAME SELECT * FROM _paired_df WHERE run_a IN "
                        "(SELECT run_id FROM runs) AND run_b IN (SELECT run_id FROM runs)"
                    )
                    return
            except StoreLockedError:
                log(f"waiting: {self.path} is locked by another process (Ctrl-C stops) ...")

    def fitted_temperature(
        self, dataset: str, model: str, weights: str, preprocessing: str, precision: str
    ) -> tuple[float, str] | None:
        """(temperature, run_id) of the latest finished run of ``model`` (these weights,
        preprocessing JSON and precision) on ``dataset`` that fitted one on the whole split
        (no ``--limit``: a smoke run's temperature is never applied), if any."""
        df = self.query(
            "SELECT m.value, r.run_id FROM runs r JOIN metrics m USING (run_id) "
            "WHERE r.dataset = ? AND r.model = ? AND r.weights = ? AND r.preprocessing = ? "
            "AND r.precision = ? AND r.status = 'finished' AND r.sample_limit IS NULL "
            "AND m.view = 'standard' "
            "AND m.metric = 'temperature' AND isfinite(m.value) "
            "ORDER BY r.finished_at DESC LIMIT 1",
            [dataset, model, weights, preprocessing, precision],
        )
        return None if df.empty else (float(df["value"].iloc[0]), str(df["run_id"].iloc[0]))

    def in_distribution_scores(
        self, dataset: str, model: str, weights: str, preprocessing: str, precision: str
    ) -> tuple[str, pd.DataFrame] | None:
        """(run_id, per-image OOD scores) of the latest finished run of ``model`` (these
        weights, preprocessing JSON and precision) on ``dataset``, view ``standard``: the
        columns ``confidence``, ``max_logit``, ``logsumexp`` (NULL in a run stored before
        beyond-inet kept logit scores); ``None`` without such a run."""
        runs = self.query(
            "SELECT run_id FROM runs WHERE dataset = ? AND model = ? AND weights = ? "
            "AND preprocessing = ? AND precision = ? AND status = 'finished' "
            "ORDER BY finished_at DESC LIMIT 1",
            [dataset, model, weights, preprocessing, precision],
        )
        if runs.empty:
            return None
        run_id = str(runs["run_id"].iloc[0])
        scores = self.query(
            "SELECT confidence, max_logit, logsumexp FROM predictions "
            "WHERE run_id = ? AND view = 'standard' ORDER BY sample_id",
            [run_id],
        )
        return run_id, scores

    def finished_cka(self, run_key: str) -> str | None:
        """The run_id of a finished CKA run with this key, if any."""
        if not self.has_table("cka_runs"):
            return None
        df = self.query("SELECT run_id FROM cka_runs WHERE run_key = ? LIMIT 1", [run_key])
        return None if df.empty else str(df["run_id"].iloc[0])

    def has_table(self, name: str) -> bool:
        """Whether the store exists and has table ``name`` (an older layout may not)."""
        with self.reader() as con:
            return con is not None and name in _table_names(con)

    @contextlib.contextmanager
    def _transaction(self, wait: float | None, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on the up-to-date schema: committed when the block ends
        (also on an early return), rolled back on any error; DuckDB errors become
        :class:`StoreError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._intent():
            con = self._connect(read_only=False, wait=self.lock_wait if wait is None else wait)
            try:
                _prepare_schema(con, self.path)
                con.execute("BEGIN TRANSACTION")
                yield con
                con.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                if isinstance(e, duckdb.Error):
                    raise StoreError(
                        f"Could not write the {what} to {self.path}: {_first_line(e)}"
                    ) from e
                raise
            finally:
                con.close()

    # ---- staging -------------------------------------------------------------------
    def stage_run(
        self,
        run: RunRecord,
        predictions: pa.Table,
        metrics: pd.DataFrame,
        replace: bool = False,
    ) -> Path:
        """Write a computed run next to the store (Parquet + JSON); ``COMPLETE`` is written
        last, so a half-written folder is never mistaken for a run."""
        folder = self.staging_dir / run.run_id
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        record = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in run.row().items()
        }
        (tmp / "run.json").write_text(json.dumps({"run": record, "replace": replace}))
        pq.write_table(predictions, tmp / "predictions.parquet")
        metrics.to_parquet(tmp / "metrics.parquet", index=False)
        (tmp / "COMPLETE").write_text("")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        return folder

    def staged_runs(self) -> list[Path]:
        """Complete staged runs, oldest first."""
        if not self.staging_dir.is_dir():
            return []
        done = [p for p in self.staging_dir.iterdir() if (p / "COMPLETE").is_file()]
        return sorted(done, key=lambda p: p.stat().st_mtime)

    def commit_staged(self, folder: Path, wait: float | None = None) -> tuple[RunRecord, bool]:
        """Commit one staged run and remove its folder; returns (run record, stored?)."""
        meta = json.loads((folder / "run.json").read_text())
        row = dict(meta["run"])
        for k in ("started_at", "finished_at"):
            if isinstance(row.get(k), str):
                row[k] = datetime.fromisoformat(row[k])
        run = RunRecord(**{k: row.get(k) for k in (c for c, _ in RUN_COLUMNS)})
        preds = _conform_predictions(pq.read_table(folder / "predictions.parquet"))
        mets = pd.read_parquet(folder / "metrics.parquet")
        stored = self.commit_run(run, preds, mets, replace=bool(meta["replace"]), wait=wait)
        discard_staged(folder)
        return run, stored

    def commit_persistently(
        self,
        run: RunRecord,
        predictions: pa.Table,
        metrics: pd.DataFrame,
        replace: bool,
        log: Log,
    ) -> bool:
        """Commit a computed run, never losing it to a lock: when the store stays locked it
        is staged on disk and the commit is retried until it succeeds (Ctrl-C stops the
        wait; the staged run is then committed by the next writer)."""
        try:
            return self.commit_run(
                run, predictions, metrics, replace, wait=min(self.lock_wait, 5.0)
            )
        except StoreLockedError:
            pass
        folder = self.stage_run(run, predictions, metrics, replace)
        log(
            f"waiting: the store {self.path} is locked by another process; the computed run "
            f"of {run.model} on {run.dataset} is staged in {folder} and will be "
            "committed as soon as the lock is free (Ctrl-C stops; the next precompute on "
            "this store commits it)."
        )
        while True:
            try:
                stored = self.commit_run(run, predictions, metrics, replace, wait=self.lock_wait)
            except StoreLockedError:
                log(
                    f"waiting: {self.path} is still locked ({run.model} on "
                    f"{run.dataset} staged) ..."
                )
                continue
            discard_staged(folder)
            return stored


def discard_staged(folder: Path) -> None:
    """Remove a staged run folder (after its commit)."""
    shutil.rmtree(folder, ignore_errors=True)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The layout version of an open store: 0 = empty, 1 = the first layout (no
    ``schema_info``), else the recorded one."""
    names = _table_names(con)
    if "runs" not in names:
        return 0
    if "schema_info" not in names:
        return 1
    row = con.execute("SELECT max(version) FROM schema_info").fetchone()
    return int(row[0]) if row and row[0] is not None else 1


def _newer(path: Path, version: int) -> StoreUnusableError:
    return StoreUnusableError(
        f"The results store {path} has layout version {version}, newer than this "
        f"beyond-inet understands ({SCHEMA_VERSION}). Upgrade beyond-inet, or pass another "
        "--store."
    )


def _prepare_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create the tables, or bring an older store to :data:`SCHEMA_VERSION` (before the
    write's transaction); a newer store is refused."""
    version = schema_version(con)
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    for sql in SCHEMA_SQL:
        con.execute(sql)
    for v in range(max(version, 1), SCHEMA_VERSION):
        for sql in MIGRATIONS[v]:
            con.execute(sql)
    if version < SCHEMA_VERSION:
        con.execute("DELETE FROM schema_info")
        con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])


def _table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    return {"runs", "predictions", "metrics"} <= _table_names(con)
