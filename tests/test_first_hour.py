"""A first hour that works: the commands every empty page suggests run on a fresh clone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beyond_inet.store import Store
from dashboard import ui
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _commands() -> list[str]:
    """The shell commands in the hint, in order (backquoted, starting with python/streamlit)."""
    return [c for c in re.findall(r"`([^`]+)`", ui.PRECOMPUTE_HINT) if c.startswith("python")]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "data/sample"], cwd=REPO, capture_output=True, text=True
    ).stdout
    if not tracked.strip():
        pytest.skip("data/sample is not committed yet (a fresh clone would not have it)")
    dest = tmp_path_factory.mktemp("clone") / "beyond-inet"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(dest)], check=True)
    return dest


def test_the_hint_names_the_sample_and_demo_commands() -> None:
    cmds = _commands()
    assert ui.SAMPLE_COMMAND in cmds and ui.DEMO_COMMAND in cmds
    assert any("--list-datasets" in c for c in cmds)


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A suggested ``python ...`` command, run with this interpreter in ``cwd``."""
    argv = [sys.executable, *command.split()[1:]]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_suggested_first_commands_work_on_a_fresh_clone(clone: Path) -> None:
    """The sample run stores ImageNet val and cue-conflict runs; the demo store fills."""
    r = _run(ui.SAMPLE_COMMAND, clone)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = Store(clone / "data" / "results.duckdb").query("SELECT dataset FROM runs")
    assert set(runs["dataset"]) == {"imagenet-val", "cue-conflict"}
    r = _run(ui.DEMO_COMMAND, clone)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(Store(clone / "data" / "demo.duckdb").query("SELECT run_id FROM runs")) > 10


def test_help_names_where_the_layouts_are() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "precompute", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0 and "--list-datasets (with --data-root DIR) shows" in r.stdout
    assert "--data-root data/sample" in r.stdout
