"""The dashboard opens on no store and on a filled store (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

APP = str(REPO / "dashboard" / "app.py")


def _run(monkeypatch: pytest.MonkeyPatch, store: Path) -> AppTest:
    monkeypatch.setenv("BEYOND_INET_STORE", str(store))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_no_store_shows_how_to_fill_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = _run(monkeypatch, tmp_path / "absent.duckdb")
    assert "python -m precompute" in at.info[0].value


def test_filled_store_lists_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 data_root: Path) -> None:
    from precompute.cli import main

    store = tmp_path / "s.duckdb"
    assert main(["--model", "timm:test_vit", "--random-weights", "--data-root", str(data_root),
                 "--dataset", "cue-conflict", "--store", str(store), "--workers", "0",
                 "--quiet", "--bootstrap", "0"]) == 0
    at = _run(monkeypatch, store)
    assert "RANDOM" in at.warning[0].value
    assert at.dataframe[0].value["model"].tolist() == ["timm:test_vit"]
