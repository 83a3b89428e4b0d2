"""Transfer: linear-probe accuracy on the VTAB tasks, per task and per group, measured next
to the paper's published numbers, with the gap."""

import streamlit as st

from dashboard import figures, frames, state, ui

sel = state.current()
st.title("Transfer")
st.write(
    "How well do frozen features transfer? A linear probe (logistic regression on "
    "L2-normalised features, regularisation chosen on val) per VTAB-1k task: natural, "
    "specialized and structured images."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel)  # all: the group means are derived over every task
    comb = comb[comb["dataset"].isin(frames.transfer_datasets())]
    tasks = frames.transfer_table(comb)
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif tasks.empty:
        ui.empty(
            "No transfer results for these models. Run `python -m precompute --transfer "
            "all --model NAME` with the VTAB tasks under `<data-root>/vtab/` "
            "(`--list-datasets` shows what is found)."
        )
    else:
        groups = frames.transfer_groups(comb)
        ui.chart(figures.transfer_groups_chart(groups), "transfer-groups")
        ui.chart(figures.transfer_tasks_chart(tasks), "transfer-tasks")
        st.subheader("Per task")
        ui.table(frames.transfer_wide(tasks), "transfer-tasks")
        gap = frames.transfer_gap(tasks)
        st.subheader("Measured minus published")
        if gap.empty:
            st.caption(
                "Choose **measured + published** in the sidebar, for models with both, to "
                "see the gap (percentage points)."
            )
        else:
            ui.chart(figures.transfer_gap_chart(gap), "transfer-gap")
            ui.table(gap, "transfer-gap")
        st.caption(
            "Group means average the tasks present (k of 7 natural, 4 specialized, 8 "
            "structured); the overall mean averages all tasks present (the paper: 19)."
        )
