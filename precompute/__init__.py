"""``python -m precompute``: run evaluations and write per-image results to DuckDB."""
