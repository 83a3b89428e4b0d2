"""ImageNet-X: error ratio per factor per model (1.0 = as hard as ImageNet overall)."""

import streamlit as st

from beyond_inet.reference import IMAGENET_X_FACTORS
from dashboard import figures, state, ui

sel = state.current()
st.title("ImageNet-X")
st.write(
    "Which kinds of images does each model get wrong? The error ratio of a factor is "
    "the error on images annotated with that factor divided by the overall error: above "
    "1.0 the factor makes the model fail more often than usual."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, ("imagenet-val",))
    std = comb[comb["view"] == "standard"]
    er = std[std["metric"].str.startswith("error_ratio:")].copy()
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif er.empty:
        ui.empty(
            "No ImageNet-X results for these models and this source (the paper "
            "publishes these only as a figure; they are measured on ImageNet val)."
        )
    else:
        er["factor"] = er["metric"].str.split(":", n=1).str[1]
        counts = std[std["metric"].str.startswith("factor_count:")].copy()
        counts["factor"] = counts["metric"].str.split(":", n=1).str[1]
        order_by = st.radio(
            "Sort factors by",
            ["mean error ratio", "name", "image count"],
            horizontal=True,
            key="ix-sort",
        )
        if order_by == "name":
            order = sorted(er["factor"].unique())
        elif order_by == "image count" and len(counts):
            order = (
                counts.groupby("factor")["value"].max().sort_values(ascending=False).index.tolist()
            )
            order += [f for f in er["factor"].unique() if f not in order]
        else:
            order = er.groupby("factor")["value"].mean().sort_values(ascending=False).index.tolist()
        ui.chart(
            figures.grouped_bars(
                er,
                "factor",
                "Error ratio per ImageNet-X factor",
                "error ratio",
                reference=1.0,
                category_order=order,
            ),
            "imagenet-x-error-ratio",
        )
        table = er.pivot_table(index="factor", columns="display", values="value").reindex(order)
        for m in er["display"].unique():
            r = er[er["display"] == m].set_index("factor")
            table[f"{m} 95% CI"] = [
                f"[{r.loc[f, 'ci_low']:.2f}, {r.loc[f, 'ci_high']:.2f}]"
                if f in r.index and r.loc[f, "ci_low"] == r.loc[f, "ci_low"]
                else ""
                for f in table.index
            ]
        if len(counts):
            table["images"] = counts.groupby("factor")["value"].max().reindex(order)
        ui.table(table.round(3).reset_index(), "imagenet-x", hide_index=True)
        mean = std[std["metric"] == "error_ratio_mean"]
        if len(mean):
            st.caption(
                "Mean error ratio over factors: "
                + ", ".join(f"{r.display} {r.value:.3f}" for r in mean.itertuples())
            )
        missing = [f for f in IMAGENET_X_FACTORS if f not in set(er["factor"])]
        if missing:
            st.caption(f"Factors without results: {', '.join(missing)}.")
