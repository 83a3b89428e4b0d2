"""Runs: what the results store holds (every finished run and its provenance)."""

import streamlit as st

from dashboard import frames, queries, state, ui

sel = state.current()
st.title("Runs")
st.caption(f"Store: `{sel.path}`")
with ui.guard():
    runs = queries.all_runs(sel.path, sel.version)
    if runs.empty:
        ui.empty("No measured results yet.")
    else:
        if runs["random_weights"].any():
            st.warning(frames.MEANINGLESS_NOTE)
        latest = set(sel.runs["run_id"]) | set(queries.profiles(sel.path, sel.version)["run_id"])
        runs = runs.assign(shown=runs["run_id"].isin(latest))
        st.write(
            "The dashboard shows the latest finished run per (model, dataset) "
            "(`shown`; dataset `profile`: `--profile` costs, in the finder and Compare); "
            "older runs stay in the store."
        )
        ui.table(runs, "runs")
