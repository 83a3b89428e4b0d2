"""Calibration: reliability diagrams and confidence histograms recomputed from per-image
predictions with an adjustable number of bins, and the ECE / MCE / NLL / Brier table."""

import pandas as pd
import streamlit as st

from beyond_inet.scoring.catalogue import spec as metric_spec
from dashboard import figures, frames, queries, state, ui

METRICS = ("top1", "ece", "mce", "nll", "brier")

sel = state.current()
st.title("Calibration")
st.write(
    "Are a model's confidences honest? A calibrated model is right 80% of the time "
    "when it says 80%: its bars follow the diagonal, and the shaded gap is the error."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, names=METRICS)
    labelled = comb[comb["metric"] == "ece"]
    datasets = sorted(set(labelled["dataset"]), key=lambda d: (d != "imagenet-val", d))
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif not datasets:
        ui.empty("No calibration results for these models and this source.")
    else:
        c1, c2, c3 = st.columns([2, 2, 3])
        dataset = c1.selectbox("Dataset", datasets, key="cal-dataset")
        views = sorted(
            set(labelled[labelled["dataset"] == dataset]["view"]),
            key=lambda v: (v != "standard", v),
        )
        view = c2.selectbox("View", views, key="cal-view")
        n_bins = c3.slider("Number of bins", 2, 50, 15, key="cal-bins")
        rows = comb[(comb["dataset"] == dataset) & (comb["view"] == view)]
        both = rows["source"].nunique() > 1
        keys = (
            rows[["model", "display", "source"]].drop_duplicates().sort_values(["model", "source"])
        )
        out = []
        measured_models = tuple(sorted(rows[rows["source"] == "measured"]["model"].unique()))
        bins = pd.DataFrame(columns=queries.BIN_COLUMNS)
        if measured_models:
            bins = queries.calibration_table(
                sel.path, sel.version, dataset, view, measured_models, n_bins
            )
        recomputed = queries.ece_from_bins(bins).set_index("model")
        for k in keys.itertuples(index=False):
            r = rows[(rows["model"] == k.model) & (rows["source"] == k.source)]
            rec = {"model": frames.row_label(k.display, k.source, both)}
            for metric in METRICS:
                x = r[r["metric"] == metric]
                m = metric_spec(metric)
                rec[m.title] = (
                    frames.format_value(
                        float(x["value"].iloc[0]),
                        float(x["ci_low"].iloc[0]),
                        float(x["ci_high"].iloc[0]),
                        m.percent,
                    )
                    if len(x)
                    else ""
                )
            if k.source == "measured" and k.model in recomputed.index:
                rec[f"ECE ({n_bins} bins)"] = f"{recomputed.loc[k.model, 'ece']:.3f}"
                rec[f"MCE ({n_bins} bins)"] = f"{recomputed.loc[k.model, 'mce']:.3f}"
            out.append(rec)
        st.subheader("Calibration metrics")
        ui.table(pd.DataFrame(out).fillna(""), f"calibration-{dataset}-{view}")
        st.caption(
            "Stored ECE / MCE use 15 equal-width bins on the max-softmax confidence "
            "(torchmetrics' binning); the recomputed columns use the bins chosen above. "
            "NLL and Brier are means over images."
        )
        ece = labelled[labelled["view"] == "standard"]
        ui.chart(
            figures.grouped_bars(
                ece,
                "dataset",
                "ECE per dataset (lower is better)",
                "ECE",
                category_order=[d for d in datasets if d in set(ece["dataset"])],
            ),
            "ece-per-dataset",
        )
        st.subheader("Reliability diagrams")
        if bins.empty:
            ui.empty(
                "Reliability diagrams need measured per-image predictions: none for this "
                "dataset and these models."
            )
        else:
            ui.chart(
                figures.reliability_diagram(bins, n_bins, f"{dataset} ({view}), {n_bins} bins"),
                "reliability",
            )
            ui.chart(
                figures.confidence_histogram(bins, n_bins, "Confidence histogram"),
                "confidence-histogram",
            )
            ui.table(bins.round(4), f"reliability-bins-{dataset}-{view}")
