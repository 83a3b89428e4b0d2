"""Command-line options passed to the app after ``--`` (``streamlit run app.py -- --store X``)."""

from __future__ import annotations

import sys


def cli_store_arg(argv: list[str] | None = None) -> str | None:
    """The value of ``--store`` in the app's argv, if given."""
    args = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(args):
        if a == "--store" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--store="):
            return a.split("=", 1)[1]
    return None
