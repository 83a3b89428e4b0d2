"""The app's shared state: which store, which models, which source (sidebar, kept in the URL).

Every page starts with :func:`current`, which draws the sidebar and returns the selection. The
chosen values live in plain session keys (widgets are page-specific in Streamlit, so each
page's widget is initialised from them and writes back on change) and are mirrored into the
URL query (``?models=a,b&source=both``) so a view can be shared.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from beyond_inet import settings
from beyond_inet.store import StoreError, StoreLockedError
from dashboard import frames, published
from dashboard.queries import latest_runs, store_path, store_version

SOURCE_LABELS = {"both": "measured + published", "measured": "measured", "published": "published"}
#: The sidebar's model box grows with the selection instead of scrolling inside a fixed
#: height (where the 5th model and beyond were hidden), and its chips show whole names,
#: wrapped (cut to a fixed width, long names all read as the same prefix).
SIDEBAR_CSS = (
    "<style>[data-testid='stSidebar'] [data-testid='stMultiSelect'] div[role='group']"
    "{max-height:none !important}"
    "[data-testid='stSidebar'] [data-testid='stMultiSelectTagsContainer']"
    "{max-height:none !important}"
    "[data-testid='stSidebar'] [data-testid='stMultiSelect'] [data-tag]"
    "{max-width:100% !important;height:auto !important}"
    "[data-testid='stSidebar'] [data-testid='stMultiSelect'] [data-tag] > span[title]"
    "{max-width:none !important;white-space:normal !important;overflow-wrap:anywhere;"
    "text-overflow:clip !important}</style>"
)
_MODELS, _SOURCE = "sel_models", "sel_source"  # persistent across pages
_W_MODELS, _W_SOURCE = "_w_models", "_w_source"  # the widgets (page-specific)


def _copy(src: str, dst: str) -> None:
    st.session_state[dst] = st.session_state[src]


def cli_values(flag: str, argv: list[str] | None = None) -> list[str]:
    """Every value of ``flag`` (``--flag V`` or ``--flag=V``) in the app's argv (after
    ``--`` on the streamlit command line)."""
    args = sys.argv[1:] if argv is None else argv
    out = []
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(f"{flag}="):
            out.append(a.split("=", 1)[1])
    return out


def cli_store_arg(argv: list[str] | None = None) -> str | None:
    """The value of ``--store`` in the app's argv, if given."""
    values = cli_values("--store", argv)
    return values[-1] if values else None


def data_roots(argv: list[str] | None = None) -> tuple[Path, ...]:
    """The folders the dashboard may read images from: every ``--data-root`` after ``--``,
    else ``$BEYOND_INET_DATA_ROOT`` (``:``-separated), else ``data/datasets`` (the
    precompute's default). Images are served only from inside these, whatever a store says."""
    given = [Path(v) for v in cli_values("--data-root", argv) if v.strip()]
    return tuple(given or settings.env_data_roots() or [settings.DEFAULT_DATA_ROOT])


@dataclass(frozen=True)
class Selection:
    """What every page shows: the store (path + change token), models and source."""

    path: str
    version: str
    models: tuple[str, ...]
    source: str
    options: tuple[str, ...]
    runs: pd.DataFrame
    locked: bool = False
    data_roots: tuple[str, ...] = ()

    @property
    def has_measured(self) -> bool:
        return len(self.runs) > 0


def _defaults(runs: pd.DataFrame) -> list[str]:
    """The selection before the user chooses: the paper's models and every measured one."""
    paper = list(dict.fromkeys(published.published_rows()["model"]))
    return paper + sorted(set(runs["model"]) - set(paper))


def _options(runs: pd.DataFrame) -> tuple[str, ...]:
    """Every model the sidebar offers: the defaults, then every catalogue weight (their
    published numbers show on the pages; the Model finder helps to pick them)."""
    from beyond_inet import catalog

    first = _defaults(runs)
    try:
        names: tuple[str, ...] = catalog.model_names()
    except FileNotFoundError:
        names = ()
    known = set(first)
    return tuple(first + [n for n in names if n not in known])


def _label(runs: pd.DataFrame, labels: dict[str, str]):
    random = set(runs.loc[runs["random_weights"].astype(bool), "model"]) if len(runs) else set()

    def fmt(model: str) -> str:
        name = f"{model} ({labels[model]})" if model in labels else model
        return name + (" ⚠ random" if model in random else "")

    return fmt


def sidebar() -> Selection:
    """Draw the shared sidebar and return (and remember) the selection."""
    path = str(store_path(cli_store_arg()))
    version = store_version(path)
    locked, broken = False, ""
    try:
        runs = latest_runs(path, version)
    except StoreLockedError:
        runs, locked = latest_runs.uncached("", ""), True  # type: ignore[attr-defined]
    except (StoreError, OSError) as e:
        runs, broken = latest_runs.uncached("", ""), str(e).splitlines()[0]  # type: ignore
    options = _options(runs)
    qp = st.query_params
    if _MODELS not in st.session_state:
        wanted = [m for m in qp.get("models", "").split(",") if m in options]
        st.session_state[_MODELS] = wanted if "models" in qp else _defaults(runs)
    st.session_state[_MODELS] = [m for m in st.session_state[_MODELS] if m in options]
    if _SOURCE not in st.session_state:
        src = qp.get("source", "both")
        st.session_state[_SOURCE] = src if src in frames.SOURCES else "both"
    # widgets are re-initialised from the persistent keys on every page
    st.session_state[_W_MODELS] = list(st.session_state[_MODELS])
    st.session_state[_W_SOURCE] = st.session_state[_SOURCE]
    sb = st.sidebar
    sb.markdown(SIDEBAR_CSS, unsafe_allow_html=True)
    sb.multiselect(
        "Models",
        options,
        key=_W_MODELS,
        on_change=_copy,
        args=(_W_MODELS, _MODELS),
        format_func=_label(runs, published.paper_labels()),
        help="The models every page compares (kept in the URL).",
    )
    sb.radio(
        "Results",
        frames.SOURCES,
        key=_W_SOURCE,
        on_change=_copy,
        args=(_W_SOURCE, _SOURCE),
        format_func=SOURCE_LABELS.__getitem__,
        help="Measured = this store; published = the paper's numbers shipped in data/.",
    )
    models = tuple(st.session_state[_MODELS])
    source = st.session_state[_SOURCE]
    st.query_params["models"] = ",".join(models)
    st.query_params["source"] = source
    if broken:
        sb.error(
            f"Cannot read the results store `{path}`: {broken}. Showing published numbers only."
        )
    elif locked:
        sb.warning(
            "The store is busy (precompute is writing); showing published numbers. "
            "Refresh in a moment."
        )
    elif len(runs):
        sb.caption(f"Store `{path}`: {len(runs)} runs, {runs['model'].nunique()} models.")
        if runs["random_weights"].any():
            sb.warning(frames.MEANINGLESS_NOTE)
    else:
        sb.caption(f"No measured results in `{path}` yet.")
    return Selection(
        path, version, models, source, options, runs, locked, tuple(str(r) for r in data_roots())
    )


def add_models(names: list[str]) -> None:
    """Add models to the shared selection (and the URL); the caller reruns the page."""
    chosen = list(st.session_state.get(_MODELS, []))
    chosen += [n for n in names if n not in chosen]
    st.session_state[_MODELS] = chosen
    st.query_params["models"] = ",".join(chosen)


def current() -> Selection:
    """Draw the shared sidebar (every page calls this first) and return the selection."""
    return sidebar()
