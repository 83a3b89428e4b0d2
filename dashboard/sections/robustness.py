"""Robustness: accuracy per benchmark per model (ImageNet-C per corruption and severity)."""

import streamlit as st

from dashboard import figures, frames, state, ui

sel = state.current()
st.title("Robustness")
st.write(
    "How much accuracy survives a distribution shift? Top-1 per benchmark and the "
    "paper's average over its seven robustness benchmarks."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel)
    table = frames.robustness_table(comb)
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif table.empty:
        ui.empty("No robustness results for these models and this source.")
    else:
        order = list(dict.fromkeys(table["benchmark"]))
        ui.chart(
            figures.grouped_bars(
                table,
                "benchmark",
                "Top-1 accuracy per benchmark",
                "top-1 (%)",
                percent=True,
                category_order=order,
            ),
            "robustness",
        )
        wide = (
            table.pivot_table(
                index="benchmark", columns=["display", "source"], values="value", sort=False
            )
            * 100
        )
        wide.columns = [f"{d} ({s})" for d, s in wide.columns]
        ui.table(wide.round(1).reindex(order).reset_index(), "robustness")
        notes = table[table["detail"].notna()]
        if len(notes):
            st.caption(
                "Measured: "
                + "; ".join(f"{r.display} {r.benchmark}: {r.detail}" for r in notes.itertuples())
            )
        extra = comb[(comb["metric"] == "top1_1000way") & (comb["view"] == "standard")]
        if len(extra):
            st.caption(
                "1000-way argmax accuracy (no 200-class subset): "
                + ", ".join(
                    f"{r.display} {r.dataset} {100 * r.value:.1f}%" for r in extra.itertuples()
                )
            )
    st.subheader("ImageNet-C per corruption and severity")
    c = frames.family_views(comb[(comb["dataset"] == "imagenet-c") & (comb["metric"] == "top1")])
    if c.empty:
        ui.empty(
            "No per-corruption ImageNet-C results (views `<corruption>:<severity>`) for "
            "these models; the paper publishes only the mean."
        )
    else:
        c = c.rename(columns={"family": "corruption"})
        by_sev = c.groupby(["display", "source", "x"], as_index=False)["value"].mean()
        by_sev = by_sev.assign(
            family="mean over corruptions",
            x_raw=by_sev["x"].astype(str),
            ci_low=float("nan"),
            ci_high=float("nan"),
        )
        ui.chart(figures.curves(by_sev, "top-1 (%)", "Top-1 vs severity"), "imagenet-c-severity")
        model = st.selectbox("Model", sorted(c["display"].unique()), key="rob-c-model")
        ui.chart(
            figures.heatmap(
                c[c["display"] == model],
                "x_raw",
                "corruption",
                f"{model}: top-1 (%) per corruption and severity",
            ),
            "imagenet-c-heatmap",
        )
        wide = c.pivot_table(index=["corruption", "x_raw"], columns="display", values="value")
        ui.table(
            (wide * 100).round(2).reset_index().rename(columns={"x_raw": "severity"}), "imagenet-c"
        )
        mce = comb[
            (comb["dataset"] == "imagenet-c")
            & (comb["metric"] == "mean_ce")
            & (comb["view"] == "standard")
        ]
        if len(mce):
            st.caption(
                "mean Corruption Error, mCE (AlexNet-normalised, lower is better): "
                + ", ".join(f"{r.display} {r.value:.3f}" for r in mce.itertuples())
            )
        extra = comb[
            (comb["dataset"] == "imagenet-c")
            & (comb["metric"] == "top1_extra")
            & (comb["view"] == "standard")
        ]
        if len(extra):
            st.caption(
                "The 4 extra corruptions (not in the benchmark's top-1 or mCE): "
                + ", ".join(f"{r.display} {100 * r.value:.1f}%" for r in extra.itertuples())
            )
    st.caption("Transfer to other tasks (VTAB linear probes): see the **Transfer** page.")
