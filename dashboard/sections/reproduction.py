"""Reproduction: every number the paper publishes next to the measured one."""

import streamlit as st

from dashboard import figures, queries, state, ui

sel = state.current()
st.title("Reproduction")
st.write(
    "Each **published** number of the paper next to what this store measured for the same "
    "model, dataset and metric, with the difference (measured - published, in the "
    "published unit)."
)
with ui.guard():
    if sel.source == "published":
        st.caption(
            "Source *published*: the paper's numbers only; choose *measured* or "
            "*measured + published* in the sidebar to compare."
        )
    comb, rep = queries.reproduction_table(
        sel.path if sel.has_measured else "", sel.version, sel.source, sel.models
    )
    ui.random_banner(comb[comb["source"] == "measured"])
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif rep.empty:
        ui.empty(
            "The paper publishes numbers only for its four models (deit3_21k, "
            "convnext_base_21k, vit_clip, convnext_clip): select one of them.",
            hint=False,
        )
    else:
        only = st.toggle(
            "Only numbers with a measured counterpart",
            key="rep-only",
            value=bool(rep["measured"].notna().any()),
        )
        shown = rep[rep["measured"].notna()] if only else rep
        if rep["measured"].isna().all():
            ui.empty(
                "Nothing measured yet for these models: the table lists the published "
                "numbers with their provenance."
            )
        ui.chart(figures.measured_vs_published(rep), "measured-vs-published")
        ui.table(
            shown.round(4),
            "reproduction",
            column_config={"source": st.column_config.LinkColumn("source")},
        )
        st.caption(
            "Published numbers ship in data/published; provenance: *printed* = read "
            "off the paper's figure or table; *derived* = "
            "computed from printed numbers. Rows without a store key (FLOPs) are "
            "not measured by this project."
        )
