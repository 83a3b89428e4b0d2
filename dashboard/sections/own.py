"""Your own images: the models on a dataset of your own (``precompute --own NAME=PATH``),
ranked with intervals and significance marks, per-class accuracy, the confusion matrix,
the reliability diagram, and a hand-off to the Explorer (A right, B wrong)."""

import streamlit as st

from dashboard import figures, frames, queries, state, ui

ALPHA = 0.05
N_BINS = 15

sel = state.current()
st.title("Your own images")
st.write(
    "Which of these models is best on *your* images, and how sure can you be? Each model's "
    "frozen features of your train / val / test split are classified three ways: a linear "
    "probe, k-nearest neighbours and, for CLIP models, zero-shot on the class names; all "
    "on the same test images."
)
COMMAND = "python -m precompute --model A,B,C --own NAME=PATH"
with ui.guard():
    if sel.source == "published":
        ui.empty(
            "Results on your own images are measured only: choose *measured* or *both* in "
            "the sidebar.",
            hint=False,
        )
        st.stop()
    runs = queries.own_runs(sel.path, sel.version) if sel.has_measured else None
    if runs is None or runs.empty:
        ui.empty(
            f"No dataset of your own in this store yet. Run `{COMMAND}` (PATH: an image "
            "folder, `<class>/*.jpg` or `train|val|test/<class>/*.jpg`, or a CSV of "
            "`path,label[,split]`; `--list-datasets --own NAME=PATH` checks it first). The "
            "Model finder's shortlist prints this command for its models.",
            hint=False,
        )
        st.stop()
    c1, c2 = st.columns([1, 2])
    datasets = sorted(runs["dataset"].unique())
    dataset = c1.selectbox(
        "Dataset", datasets, format_func=lambda d: d.removeprefix("own-"), key="own-dataset"
    )
    here, stale = frames.own_current(
        runs[(runs["dataset"] == dataset) & runs["model"].isin(sel.models)]
    )
    if stale:
        st.warning(
            f"Left out: {', '.join(stale)}, evaluated on an earlier version of this dataset "
            "(other images, split or labels). Run them again with `--own` to compare."
        )
    if here.empty:
        ui.empty(
            f"None of the sidebar's models was evaluated on {dataset.removeprefix('own-')}: "
            f"add {', '.join(runs[runs['dataset'] == dataset]['model'])} in the sidebar.",
            hint=False,
        )
        st.stop()
    ui.random_banner(here)
    models = tuple(here["model"])
    present = [v for v in frames.OWN_METHODS if any(v in vs for vs in here["views"])]
    method = c2.radio(
        "Method", present, format_func=frames.OWN_METHODS.get, horizontal=True, key="own-method"
    )
    classes = next(c for c in here["classes"] if c)
    metrics = queries.metrics(sel.path, sel.version, (dataset,))
    metrics = metrics[metrics["model"].isin(models)]
    paired = queries.paired_among(sel.path, sel.version, dataset, models)
    ranking = frames.own_ranking(metrics, paired, method, ALPHA)
    n_test = int(here["n_samples"].max())
    st.caption(
        f"{len(classes)} classes"
        + (f", {n_test} test images" if n_test else "")
        + f". Marks against the best model on the same test images: ≈ best = not "
        f"significantly worse, ▼ worse (McNemar's exact test, Holm-corrected, α = {ALPHA}); "
        "no mark: no paired comparison stored."
    )
    ui.chart(
        figures.own_ranking_chart(ranking, f"{frames.OWN_METHODS[method]}: top-1 with 95% CI"),
        "own-ranking",
    )
    shown = ranking.assign(
        **{
            "top-1": [
                frames.format_value(v, lo, hi, True)
                for v, lo, hi in zip(
                    ranking["top1"], ranking["top1_low"], ranking["top1_high"], strict=True
                )
            ],
            "balanced accuracy": [
                frames.format_value(v, lo, hi, True)
                for v, lo, hi in zip(
                    ranking["balanced"],
                    ranking["balanced_low"],
                    ranking["balanced_high"],
                    strict=True,
                )
            ],
            "ECE": ranking["ece"].round(3),
            "p vs best (Holm)": [
                f"{p:.3g}" if p == p else frames.MISSING for p in ranking["p_holm"]
            ],
        }
    )[["model", "mark", "top-1", "balanced accuracy", "ECE", "p vs best (Holm)"]]
    shown["mark"] = shown["mark"].map(lambda m: frames.OWN_MARKS.get(m, ""))
    ui.table(shown, "own-ranking")

    preds = queries.own_predictions(sel.path, sel.version, dataset, method, models)
    st.subheader("Per class")
    pc = frames.per_class_accuracy(preds, classes)
    ui.chart(
        figures.grouped_bars(
            pc.assign(
                display=pc["model"],
                source="measured",
                value=pc["accuracy"],
                ci_low=float("nan"),
                ci_high=float("nan"),
            ),
            "class",
            "Top-1 per class",
            "top-1 (%)",
            percent=True,
            category_order=list(classes),
        ),
        "own-per-class",
    )
    st.subheader("Confusion matrix")
    model = st.selectbox("Model", models, key="own-confusion-model")
    ui.chart(
        figures.confusion_heatmap(
            frames.confusion_matrix(preds[preds["model"] == model], classes), model
        ),
        "own-confusion",
    )
    st.subheader("Calibration")
    raw = queries.calibration_table(sel.path, sel.version, dataset, method, models, N_BINS)
    scaled = queries.calibration_table(
        sel.path, sel.version, dataset, method, models, N_BINS, scaled=True
    )
    temps = metrics[(metrics["view"] == method) & (metrics["metric"] == "temperature")]
    ui.chart(
        figures.reliability_diagram(
            raw,
            N_BINS,
            "Reliability diagram (test images); below: after temperature scaling",
            scaled if len(scaled) else None,
            {r.model: f"T = {r.value:.2f}" for r in temps.itertuples()},
        ),
        "own-reliability",
    )
    st.caption(
        "The temperature is fitted on the val split's predictions (the probe and k-NN as "
        "fitted on train alone) and applied to test."
    )

    st.subheader("Look at the images")
    if len(models) >= 2:
        a_col, b_col, go_col = st.columns([2, 2, 1])
        a = a_col.selectbox("Right", models, key="own-a")
        b = b_col.selectbox("Wrong", [m for m in models if m != a], key="own-b")
        if go_col.button("Open in Explorer", key="own-explore"):
            state.add_models(list(models))
            for k in frames.EXPLORER_DEFAULTS:
                st.session_state.pop(k, None)
            st.session_state.update(
                frames.explorer_filters(dataset, method, {a: "correct", b: "wrong"}, models)
            )
            st.switch_page("sections/explorer.py")
    roots = [r for r in here["dataset_root"].dropna().unique()]
    if roots and not any(queries.inside_any(r, sel.data_roots) for r in roots):
        st.info(
            "The Explorer serves images only from the dashboard's data roots. To see these, "
            f"start it with `streamlit run dashboard/app.py -- --data-root {roots[0]}`."
        )
