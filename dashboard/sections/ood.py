"""OOD detection: can the model tell that an image belongs to none of its classes? AUROC
and FPR@95%TPR per OOD set and OpenOOD's near/far means, the full table, and the score
distributions of one model on one set."""

import streamlit as st

from beyond_inet.datasets import OOD_REPORT
from dashboard import figures, frames, queries, state, ui

sel = state.current()
st.title("OOD detection")
st.write(
    "Can the model tell that an image belongs to none of ImageNet's classes? Each image gets "
    "a score from the model's outputs (higher = more in-distribution); the OOD sets of "
    "OpenOOD v1.5 (near: SSB-hard, NINCO; far: iNaturalist, Textures, OpenImage-O) and "
    "ImageNet-O are scored against the same model's ImageNet val images."
)
st.caption(
    "Measured results only: the paper publishes no OOD detection numbers."
    if sel.source != "published"
    else "The paper publishes no OOD detection numbers: choose **measured** in the sidebar."
)
with ui.guard():
    score = st.radio(
        "Score",
        list(frames.OOD_SCORE_LABELS),
        format_func=frames.OOD_SCORE_LABELS.get,
        horizontal=True,
        key="ood-score",
    )
    comb = ui.shown_metrics(sel, tuple(s.dataset for s in OOD_REPORT))
    table = frames.ood_table(comb, score)
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif table.empty:
        ui.empty(
            "No OOD detection results for these models (the paper publishes none). Run "
            "`python -m precompute --model NAME --dataset imagenet-val,ood-textures,...` with "
            "the sets under `<data-root>/ood/` (`--list-datasets` shows the layouts, "
            "`--download ood-textures` fetches a public one); each set is scored against "
            "the model's ImageNet val run."
        )
    else:
        order = list(dict.fromkeys(table["set"]))
        for metric, reference, note in (
            ("auroc", 0.5, "AUROC (%) per OOD set: higher is better, 50 = chance"),
            ("fpr95", None, "FPR at 95% TPR (%): OOD images let through, lower is better"),
        ):
            ui.chart(
                figures.grouped_bars(
                    table[table["metric"] == metric],
                    "set",
                    note,
                    frames.OOD_METRICS[metric] + " (%)",
                    reference=reference,
                    percent=True,
                    category_order=order,
                ),
                f"ood-{metric}",
            )
        ui.table(frames.ood_wide(table), "ood")
        partial = frames.partial_means(table)
        if partial:
            st.caption("Group means over the sets present: " + "; ".join(partial))
        measured = table[table["source"] == "measured"]
        if len(measured):
            st.subheader("Score distributions")
            left, right = st.columns(2)
            model = left.selectbox("Model", sorted(measured["model"].unique()), key="ood-model")
            sets = [s for s in OOD_REPORT if s.dataset in set(measured["dataset"])]
            chosen = right.selectbox(
                "OOD set",
                sets,
                format_func=lambda s: s.label,
                key="ood-set",
            )
            scores = queries.ood_scores(sel.path, sel.version, model, chosen.dataset, score)
            ui.chart(
                figures.ood_score_histograms(scores, chosen.label, frames.OOD_SCORE_LABELS[score]),
                "ood-scores",
            )
    st.caption(
        "AUROC: the chance that an in-distribution image outscores an OOD one. FPR@95%TPR: "
        "the share of OOD images above the threshold that keeps 95% of the in-distribution "
        "images. AUPR-in / AUPR-out: the area under the precision-recall curve with "
        "in-distribution / OOD images as the positives. As OpenOOD v1.5 computes them."
    )
