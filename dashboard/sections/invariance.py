"""Invariance: accuracy and true-class probability vs scale, shift and resolution."""

import streamlit as st

from beyond_inet.scoring.catalogue import spec as metric_spec
from dashboard import figures, frames, state, ui

METRICS = ("top1", "p_true_mean", "agreement")

sel = state.current()
st.title("Invariance")
st.write(
    "Does the prediction survive a change the label does not care about? Each curve "
    "follows one model as ImageNet val images are rescaled, shifted or shown at another "
    "resolution."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, ("imagenet-val",))
    fam = frames.family_views(comb, frames.INVARIANCE_FAMILIES)
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif fam.empty:
        ui.empty(
            "No invariance results (views `scale:<s>`, `shift:<n>`, `resolution:<r>` of "
            "ImageNet val) for these models and this source. The paper shows these only "
            "as figures, so they are measured."
        )
    else:
        for metric in METRICS:
            d = fam[fam["metric"] == metric]
            if d.empty:
                continue
            m = metric_spec(metric)
            st.subheader(m.label.capitalize())
            ui.chart(
                figures.curves(d, m.title, f"{m.title} vs transform", percent=m.percent),
                f"invariance-{metric}",
            )
        table = fam.pivot_table(
            index=["family", "x_raw"], columns=["display", "metric"], values="value"
        )
        table.columns = [f"{m} {k}" for m, k in table.columns]
        ui.table(table.round(4).reset_index().rename(columns={"x_raw": "value"}), "invariance")
