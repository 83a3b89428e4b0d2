"""Read-only queries the dashboard pages use (plain functions; pages stay thin)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from beyond_inet.store import DEFAULT_STORE, Store

STORE_ENV = "BEYOND_INET_STORE"


def store_path(cli_value: str | None = None) -> Path:
    """The store to read: ``--store`` after ``--`` on the streamlit command line, else
    ``$BEYOND_INET_STORE``, else ``data/results.duckdb`` under the repository."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    return Path(__file__).resolve().parents[1] / DEFAULT_STORE


def runs_overview(path: Path) -> pd.DataFrame:
    """One row per finished run: model, dataset, images, weights, when."""
    return Store(path).query(
        "SELECT model, model_label, dataset, n_samples, n_failed, weights, random_weights, "
        "finished_at FROM runs WHERE status = 'finished' ORDER BY model, dataset"
    )
