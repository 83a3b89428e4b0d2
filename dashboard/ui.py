"""Small Streamlit helpers every page shares: tables with CSV download, charts with PNG
export, friendly empty states, the random-weights banner, and a guard against store errors."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from beyond_inet.store import StoreError, StoreLockedError
from dashboard import queries
from dashboard.state import Selection

#: The first commands every empty page suggests (each works on a fresh clone; a test runs
#: them there).
SAMPLE_COMMAND = (
    "python -m precompute --model timm:test_vit --random-weights --data-root data/sample"
)
DEMO_COMMAND = "python -m dashboard.synthetic --store data/demo.duckdb"
PRECOMPUTE_HINT = (
    "Measured results come from `python -m precompute --model all --data-root DIR` "
    "(`python -m precompute --list-datasets --data-root DIR` shows the layout each dataset "
    f"needs); they appear here after a refresh. A first try without ImageNet: `{SAMPLE_COMMAND}` "
    "(the bundled generated sample: the numbers mean nothing). Every page filled with demo "
    f"numbers: `{DEMO_COMMAND}`, then "
    "`streamlit run dashboard/app.py -- --store data/demo.duckdb --data-root data/demo-datasets`."
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def table(df: pd.DataFrame, name: str, styled: object | None = None, **kwargs: object) -> None:
    """Show ``df`` (or its Styler) and a button that downloads it as CSV; missing text
    cells show as ``—`` (never ``None``)."""
    shown = df
    if styled is None:
        text = [c for c in df.columns if df[c].dtype == object or str(df[c].dtype) == "str"]
        shown = df.assign(**{c: df[c].fillna("—") for c in text}) if text else df
    st.dataframe(
        styled if styled is not None else shown,
        hide_index=kwargs.pop("hide_index", True),
        **kwargs,
    )
    st.download_button(
        "Download CSV",
        df.to_csv(index=False).encode(),
        f"{_slug(name)}.csv",
        "text/csv",
        key=f"csv-{_slug(name)}",
    )


def chart(fig: go.Figure, name: str) -> None:
    """Show a Plotly figure; its toolbar's camera button exports it as PNG."""
    st.plotly_chart(
        fig,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": _slug(name), "scale": 2},
        },
        key=f"fig-{_slug(name)}",
    )


def picture(where: object, path: object, max_side: int, caption: str | None = None) -> None:
    """An image from a data root (``path`` from :func:`dashboard.queries.image_path`), or a
    placeholder saying why there is none; never an exception."""
    data = None if path is None else queries.image_bytes(str(path), max_side)
    if data is not None:
        where.image(data, caption=caption)  # type: ignore[attr-defined]
        return
    why = (
        "not found in the dashboard's data roots (--data-root)"
        if path is None
        else "unreadable image file"
    )
    where.caption(f"🖼 {caption + ': ' if caption else ''}{why}")  # type: ignore[attr-defined]


def empty(message: str, hint: bool = True) -> None:
    """A friendly empty state (never a traceback)."""
    st.info(message + ("\n\n" + PRECOMPUTE_HINT if hint else ""))


def random_banner(combined: pd.DataFrame) -> None:
    """A visible warning when any measured number shown comes from random weights."""
    if len(combined) and combined["random_weights"].astype(bool).any():
        shown = sorted(combined.loc[combined["random_weights"].astype(bool), "model"].unique())
        st.warning(
            "⚠ RANDOM weights or SYNTHETIC numbers (a smoke test or demo store; "
            f"meaningless): {', '.join(shown)}"
        )


def combined_metrics(
    sel: Selection, datasets: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Measured (latest runs) and published numbers for the selection, per its source
    (only some datasets / metric names when given)."""
    path = sel.path if sel.has_measured else ""
    return queries.combined(path, sel.version, sel.source, sel.models, datasets, names)


def shown_metrics(
    sel: Selection, datasets: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """:func:`combined_metrics`, with the random-weights banner for the measured ones."""
    comb = combined_metrics(sel, datasets, names)
    random_banner(comb[comb["source"] == "measured"])
    return comb


def source_note(sel: Selection) -> None:
    """A one-line caption saying what the numbers are."""
    if not sel.has_measured and sel.source != "published":
        st.caption(
            "No measured results in the store yet: showing the paper's **published** "
            "numbers. " + PRECOMPUTE_HINT
        )
    else:
        st.caption(
            {
                "both": "Measured results (solid) next to the paper's published numbers "
                "(hatched / hollow).",
                "measured": "Measured results from the store.",
                "published": "The paper's **published** numbers (data/published).",
            }[sel.source]
        )


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn store errors into a friendly message instead of a traceback."""
    try:
        yield
    except StoreLockedError:
        st.warning("The results store is busy (precompute is writing). Refresh in a moment.")
    except StoreError as e:
        st.error(f"Could not read the results store: {str(e).splitlines()[0]}")
