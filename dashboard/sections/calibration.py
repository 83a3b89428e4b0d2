"""Calibration: the stored ECE / MCE / NLL / Brier table and fitted temperatures, and
reliability diagrams and confidence histograms from per-image predictions with an adjustable
number of bins (the library's binning, the one of the stored ECE), raw and after temperature
scaling."""

import pandas as pd
import streamlit as st

from beyond_inet.scoring.metric_specs import spec as metric_spec
from dashboard import figures, frames, queries, state, ui

METRICS = ("top1", "ece", "mce", "rmsce", "nll", "brier")
SCALED = ("temperature", "ece_ts", "mce_ts", "rmsce_ts", "nll_ts", "brier_ts")
FOLDS = ("temperature_fold:0", "temperature_fold:1")
#: The bins of the stored ``ece`` / ``mce`` (``beyond_inet.scoring.evaluations``).
STORED_BINS = 15


def cell(r: pd.DataFrame, metric: str) -> str:
    """One model's formatted value of ``metric`` (its rows ``r``), or blank."""
    x = r[r["metric"] == metric]
    if not len(x):
        return frames.MISSING
    m = metric_spec(metric)
    if metric.startswith("temperature"):
        return f"{float(x['value'].iloc[0]):.3f}"
    return frames.format_value(
        float(x["value"].iloc[0]),
        float(x["ci_low"].iloc[0]),
        float(x["ci_high"].iloc[0]),
        m.percent,
    )


sel = state.current()
st.title("Calibration")
st.write(
    "Are a model's confidences honest? A calibrated model is right 80% of the time "
    "when it says 80%: its bars follow the diagonal, and the shaded gap is the error."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, names=(*METRICS, *SCALED, *FOLDS))
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
        bins = pd.DataFrame(columns=frames.BIN_COLUMNS)
        other_bins = pd.DataFrame(columns=["model", "ece", "mce", "n"])
        if measured_models:
            bins = queries.calibration_table(
                sel.path, sel.version, dataset, view, measured_models, n_bins
            )
            if n_bins != STORED_BINS:  # with 15 bins, the stored numbers are the ones
                other_bins = queries.calibration_errors(
                    sel.path, sel.version, dataset, view, measured_models, n_bins
                )
        other_bins = other_bins.set_index("model")
        for k in keys.itertuples(index=False):
            r = rows[(rows["model"] == k.model) & (rows["source"] == k.source)]
            rec = {"model": frames.row_label(k.display, k.source, both)}
            rec.update({metric_spec(metric).title: cell(r, metric) for metric in METRICS})
            if k.source == "measured" and k.model in other_bins.index:
                rec[f"ECE ({n_bins} bins)"] = f"{other_bins.loc[k.model, 'ece']:.3f}"
                rec[f"MCE ({n_bins} bins)"] = f"{other_bins.loc[k.model, 'mce']:.3f}"
            out.append(rec)
        st.subheader("Calibration metrics")
        ui.table(pd.DataFrame(out).fillna(frames.MISSING), f"calibration-{dataset}-{view}")
        st.caption(
            "ECE / MCE are the stored numbers: 15 equal-width bins on the max-softmax "
            "confidence (torchmetrics' binning, the paper's numbers). With another number of "
            "bins chosen above, the columns ECE / MCE (n bins) are the same functions with "
            "those bins, and the reliability diagram below uses them too. ECE and MCE are "
            "shown without an interval: binned ECE is biased "
            "upwards (the more so, the fewer the images), so a bootstrap of it sits above the "
            "true value, and MCE is the worst bin, often a sparse one. The debiased RMS "
            "calibration error (Kumar et al. 2019) is their uncertainty-aware counterpart: its "
            "95% interval holds the true value 95% of the time, for a perfectly calibrated "
            "model too (its low end is 0 unless a test of perfect calibration rejects). NLL "
            "and Brier are means over images, with 95% BCa bootstrap intervals."
        )
        scaled_rows = rows[rows["metric"].isin(SCALED) & (rows["source"] == "measured")]
        temps: dict[str, str] = {}
        st.subheader("After temperature scaling")
        if scaled_rows.empty:
            ui.empty(
                "No temperature-scaled results for this dataset: `precompute` fits one "
                "temperature per model on ImageNet val (cross-fitted) and applies it to the "
                "labelled shift datasets; run imagenet-val first (README, Temperature scaling)."
            )
        else:
            scaled_table = []
            for k in keys[keys["source"] == "measured"].itertuples(index=False):
                r = rows[(rows["model"] == k.model) & (rows["source"] == "measured")]
                if r[r["metric"] == "temperature"].empty:
                    continue
                folds = [cell(r, f) for f in FOLDS]
                both_folds = all(f not in ("", frames.MISSING) for f in folds)
                temps[k.model] = (
                    f"T = {folds[0]} / {folds[1]}"
                    if both_folds
                    else f"T = {cell(r, 'temperature')}"
                )
                rec = {"model": k.display}
                rec.update({metric_spec(m.removesuffix("_ts")).title: cell(r, m) for m in SCALED})
                if both_folds:
                    rec["fold temperatures (0 / 1)"] = " / ".join(folds)
                scaled_table.append(rec)
            ui.table(
                pd.DataFrame(scaled_table).fillna(frames.MISSING), f"temperature-{dataset}-{view}"
            )
            st.caption(
                "One temperature T per model divides the logits: fitted to minimise NLL on "
                "ImageNet val (each val half scored by the T of the other half), then applied "
                "to every labelled shift dataset. Top-1 does not change; T > 1 means the "
                "model was overconfident, T < 1 underconfident. On ImageNet val the "
                "reliability diagram's T is the pair of fold temperatures (cross-fit)."
            )
            std = comb[(comb["view"] == "standard") & (comb["source"] == "measured")]
            std = std[std["dataset"].isin(set(std[std["metric"] == "ece_ts"]["dataset"]))]
            ui.chart(
                figures.calibration_before_after(
                    std[std["metric"].isin(["ece", "ece_ts"])],
                    "ece",
                    "ECE per dataset, raw and after temperature scaling (lower is better)",
                ),
                "ece-before-after",
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
            scaled_bins = None
            if temps and st.toggle("Also after temperature scaling", value=True, key="cal-scaled"):
                scaled_bins = queries.calibration_table(
                    sel.path, sel.version, dataset, view, measured_models, n_bins, scaled=True
                )
            ui.chart(
                figures.reliability_diagram(
                    bins,
                    n_bins,
                    f"{dataset} ({view}), {n_bins} bins",
                    scaled_bins,
                    temps,
                ),
                "reliability",
            )
            ui.chart(
                figures.confidence_histogram(bins, n_bins, "Confidence histogram"),
                "confidence-histogram",
            )
            ui.table(bins.round(4), f"reliability-bins-{dataset}-{view}")
