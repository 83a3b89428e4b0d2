"""``Log``: how library functions report progress notes to their caller (``print`` by
default; the CLI passes one that writes to stderr, other torchrun ranks a silent one)."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]
