"""Errors reported to the user as one clear line (cheap to import)."""

from __future__ import annotations


class PrecomputeError(RuntimeError):
    """A configuration problem of a precompute run (e.g. no dataset found)."""
