"""What the results store holds."""

import streamlit as st

from dashboard.queries import runs_overview, store_path
from dashboard.state import cli_store_arg

path = store_path(cli_store_arg())
st.title("Results store")
st.caption(f"Store: `{path}`")
runs = runs_overview(path)
if runs.empty:
    st.info(
        "No measured results yet. Run `python -m precompute --model all` "
        "(or `--random-weights` for a smoke test) to fill the store."
    )
else:
    if runs["random_weights"].any():
        st.warning("Some runs use RANDOM weights (smoke tests): their numbers mean nothing.")
    st.dataframe(runs, hide_index=True)
