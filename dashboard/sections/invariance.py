"""Invariance: accuracy and true-class probability vs scale, shift and resolution."""

import streamlit as st

from beyond_inet.scoring.metric_specs import spec as metric_spec
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
        relative = st.toggle(
            "Relative to each model's standard view (1.0 = as without the transform)",
            key="inv-relative",
            help="Divides each curve by the model's own standard-view value, so models of "
            "different accuracy can be compared.",
        )
        if relative:
            fam = frames.relative_to_standard(fam, comb)
        for metric in METRICS:
            d = fam[fam["metric"] == metric]
            if d.empty:
                continue
            m = metric_spec(metric)
            st.subheader(m.label.capitalize())
            title = f"{m.label} / standard" if relative else m.title
            ui.chart(
                figures.curves(
                    d, title, f"{title} vs transform", percent=m.percent and not relative
                ),
                f"invariance-{metric}",
            )
        areas = frames.curve_areas(fam)
        st.subheader("Area under each curve")
        st.caption(
            "The trapezoid area under each curve divided by the grid's range: its mean "
            "height over the transform's values" + (" (relative curves)." if relative else ".")
        )
        ui.table(
            areas.pivot_table(
                index=["display", "source"], columns=["family", "metric"], values="area"
            )
            .round(4)
            .pipe(lambda t: t.set_axis([f"{f} {k}" for f, k in t.columns], axis=1))
            .reset_index(),
            "invariance-areas",
        )
        table = fam.pivot_table(
            index=["family", "x_raw"], columns=["display", "metric"], values="value"
        )
        table.columns = [f"{m} {k}" for m, k in table.columns]
        ui.table(table.round(4).reset_index().rename(columns={"x_raw": "value"}), "invariance")
