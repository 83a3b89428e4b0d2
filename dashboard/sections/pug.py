"""PUG-ImageNet: accuracy per factor subset, and per factor value where stored."""

import pandas as pd
import streamlit as st

from dashboard import figures, state, ui

sel = state.current()
st.title("PUG-ImageNet")
st.write(
    "Photorealistic renders where one factor changes at a time (pose, camera, light, "
    "texture, background): which factors break each model?"
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, ("pug-imagenet",))
    top1 = comb[(comb["metric"] == "top1") & (comb["view"] != "standard")]
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif top1.empty:
        ui.empty(
            "No PUG-ImageNet results for these models (the paper shows them only as "
            "figures; run precompute with a `pug-imagenet` folder under --data-root)."
        )
    else:
        ui.chart(
            figures.grouped_bars(
                top1.rename(columns={"view": "factor"}),
                "factor",
                "Top-1 per factor subset",
                "top-1 (%)",
                percent=True,
            ),
            "pug-factors",
        )
        wide = top1.pivot_table(index="view", columns="display", values="value") * 100
        ui.table(wide.round(2).reset_index().rename(columns={"view": "factor"}), "pug-factors")
        per_value = comb[comb["metric"].str.startswith("top1_at:")].copy()
        if len(per_value):
            st.subheader("Accuracy per factor value")
            per_value["x_raw"] = per_value["metric"].str.split(":", n=1).str[1]
            per_value["x"] = pd.to_numeric(per_value["x_raw"], errors="coerce")
            per_value["family"] = per_value["view"]
            per_value = per_value.sort_values(["family", "x", "x_raw"])
            factor = st.selectbox("Factor", sorted(per_value["family"].unique()), key="pug-factor")
            d = per_value[per_value["family"] == factor]
            ui.chart(figures.curves(d, "top-1 (%)", f"{factor}: top-1 per value"), "pug-values")
            ui.table(
                d[["display", "source", "x_raw", "value"]].rename(
                    columns={"x_raw": "value of factor", "value": "top-1"}
                ),
                "pug-values",
            )
