"""Representations: layer-by-layer linear CKA between two models (or one with itself)."""

import streamlit as st

from dashboard import figures, queries, state, ui

sel = state.current()
st.title("Representations")
st.write(
    "How similar are the layers of two models? Linear CKA between every pair of layers, on "
    "the same images (1 = the same representation up to rotation and scale)."
)
with ui.guard():
    runs = queries.cka_runs(sel.path, sel.version) if sel.has_measured else None
    if sel.source == "published":
        ui.empty(
            "The paper shows its CKA heatmaps only as figures, so there are no published "
            "numbers here: choose **measured** in the sidebar for the store's CKA runs.",
            hint=False,
        )
    elif runs is None or runs.empty:
        ui.empty(
            "No CKA results in the store. Run `python -m precompute --cka MODEL_A,MODEL_B "
            "[--cka-images 2000]` (one model twice compares it with itself)."
        )
    else:
        labels = dict(zip(runs["run_id"], runs["pair"], strict=True))
        run_id = st.selectbox("Model pair", list(labels), format_func=labels.get, key="cka-pair")
        info = runs[runs["run_id"] == run_id].iloc[0]
        if info["random_weights"]:
            st.warning("⚠ RANDOM weights: these similarities mean nothing (a smoke test).")
        cells = queries.cka_cells(sel.path, sel.version, run_id)
        st.caption(
            f"{info['n_images']:,} images of {info['dataset']}; tokens pooled by "
            f"{info['tokens']}; {info['estimator']}."
        )
        ui.chart(figures.cka_heatmap(cells, info["model_a"], info["model_b"]), "cka-heatmap")
        ui.chart(figures.cka_diagonal(cells, info["model_a"], info["model_b"]), "cka-diagonal")
        ui.table(
            cells.pivot_table(index="layer_a", columns="layer_b", values="cka", sort=False)
            .round(3)
            .reset_index(),
            "cka-matrix",
        )
