"""Model finder: ~1,900 published models (timm's, open_clip's and imagenet-testbed's own
numbers) to shortlist from, then measure the shortlist in depth."""

import streamlit as st

from beyond_inet import catalog
from dashboard import figures, finder, frames, queries, state, ui

sel = state.current()
st.title("Model finder")
st.write(
    "Start from every model timm, open_clip and imagenet-testbed publish results for "
    "(ObjectNet, ImageNet-C by corruption and severity, stylized ImageNet, video and "
    "adversarial robustness for the testbed's 330): filter, compare two "
    "properties at a time, see which models no other beats on both (the Pareto front) "
    "and how robust each is for its ImageNet accuracy (effective robustness), then send a "
    "shortlist to the other pages and measure it in depth."
)
st.caption(
    "Published numbers, as their sources report them (each weight with its own "
    "preprocessing; data/catalog, sources and commits in its README); numbers measured "
    "in your store appear beside them (`measured ...` columns). Effective robustness: "
    "top-1 on the shift minus what ImageNet-1k-trained models of the same ImageNet "
    "accuracy reach (Taori et al. 2020)."
)

with ui.guard():
    full = finder.table()
    measured = (
        queries.metrics(
            sel.path, sel.version, finder.MEASURED_DATASETS, False, finder.MEASURED_METRICS
        )
        if sel.has_measured and sel.source != "published"
        else None
    )
    if sel.version and sel.source != "published":
        full = finder.with_profiles(
            full, frames.profile_table(queries.profiles(sel.path, sel.version))
        )
    if measured is not None and len(measured):
        full = finder.with_measured(full, measured)
        names = {
            finder.paper_name(n, p) for n, p in zip(full["name"], full["paper_model"], strict=True)
        }
        ui.random_banner(measured[measured["model"].isin(names)])
    with st.expander("Filters", expanded=True):
        c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
        libraries = c1.multiselect("Library", sorted(full["library"].unique()), key="mf-lib")
        families = c2.multiselect(
            "Architecture family", sorted(full["family"].unique()), key="mf-family"
        )
        training = c3.multiselect(
            "Training data", sorted(full["training_data"].unique()), key="mf-data"
        )
        kind = c4.radio(
            "Head",
            finder.KINDS,
            key="mf-kind",
            help="supervised = a trained classifier (timm); zero-shot = CLIP "
            "with a text head (open_clip)",
        )
        model_types = st.multiselect(
            "imagenet-testbed model type",
            sorted(t for t in full["model_type"].dropna().unique() if t),
            key="mf-type",
            help="The testbed's grouping of its 330 models (standard training, robustness "
            "interventions, more data, ...); models it does not cover have none.",
        )
        c5, c6, c7, c8 = st.columns([2, 2, 1, 2])
        stops = finder.PARAM_STOPS
        params = c5.select_slider(
            "Params (M, log scale)", stops, (stops[0], stops[-1]), key="mf-params"
        )
        min_speed = c6.select_slider(
            "At least img/s on the GPU benchmark (log scale)",
            finder.SPEED_STOPS,
            0,
            key="mf-speed",
            help="timm's RTX 4090 AMP benchmark (by architecture); open_clip publishes none",
        )
        sizes = c7.multiselect(
            "Input size", sorted(full["input_size"].dropna().astype(int).unique()), key="mf-size"
        )
        text = c8.text_input("Search", key="mf-text", placeholder="e.g. convnext in22k")
        keep_unknown = st.toggle(
            "Keep models without a number for the params / speed filter (shown as unknown)",
            value=True,
            key="mf-unknown",
        )
    filters = finder.Filters(
        libraries=tuple(libraries),
        families=tuple(families),
        training=tuple(training),
        model_types=tuple(model_types),
        kind=kind,
        params=None if params == (stops[0], stops[-1]) else (float(params[0]), float(params[1])),
        throughput=None if min_speed == 0 else (float(min_speed), float("inf")),
        input_sizes=tuple(int(s) for s in sizes),
        text=text,
        keep_unknown=keep_unknown,
    )
    df = finder.apply_filters(full, filters)
    unknown = finder.unknown_counts(df if keep_unknown else full, filters)
    notes = [
        f"{n:,} without {finder.label(c)}: "
        + ("kept, shown as unknown" if keep_unknown else "left out")
        for c, n in unknown.items()
        if n
    ]
    st.caption(
        f"**{len(df):,}** of {len(full):,} models match."
        + (f" ({'; '.join(notes)})" if notes else "")
    )
    if df.empty:
        ui.empty("No model matches these filters.", hint=False)
        st.stop()

    axes = finder.axis_columns(df)
    a1, a2, a3 = st.columns([2, 2, 1])
    x = a1.selectbox(
        "x axis",
        axes,
        index=axes.index(finder.DEFAULT_X),
        key="mf-x",
        format_func=lambda c: finder.coverage(df, c),
    )
    y = a2.selectbox(
        "y axis",
        axes,
        index=axes.index(finder.DEFAULT_Y),
        key="mf-y",
        format_func=lambda c: finder.coverage(df, c),
    )
    scale = a3.radio("Accuracy axes", ("logit", "linear"), key="mf-scale", horizontal=True)
    event = st.plotly_chart(
        figures.finder_scatter(df, x, y, scale, finder.pareto(df, x, y), finder.fit_for(x, y)),
        key="mf-scatter",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False},
    )
    st.caption(
        "Box- or lasso-select points to shortlist them. Black rings: the Pareto front; "
        "stars: the paper's four models; dashed: the ImageNet-1k baseline fit "
        "(shown for ImageNet top-1 against a shift's top-1)."
    )

    st.subheader("Accuracy against cost")
    b1, b2 = st.columns(2)
    acc_cols = [c for c in axes if finder.is_accuracy(c)]
    acc = b1.selectbox(
        "Accuracy", acc_cols, key="mf-acc", format_func=lambda c: finder.coverage(df, c)
    )
    cost = b2.radio(
        "Cost",
        ("throughput_gpu", "throughput_cpu", "params_m", "gmacs"),
        key="mf-cost",
        horizontal=True,
        format_func=finder.label,
    )
    cost_event = st.plotly_chart(
        figures.finder_scatter(
            df,
            cost,
            acc,
            scale,
            finder.pareto(df, cost, acc),
            title=f"{finder.label(acc)} vs {finder.label(cost)}",
        ),
        key="mf-cost-scatter",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
        config={"displaylogo": False},
    )

    st.subheader("Models")
    st.caption(f"Sorted by the chart's y axis, {finder.label(y)}; click a header to re-sort.")
    shown = finder.sort_by(df, y).drop(columns=["hover"], errors="ignore").reset_index(drop=True)
    table_event = st.dataframe(
        shown,
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key="mf-table",
        column_config={
            "model": st.column_config.TextColumn("model @ eval size", pinned=True),
            **{
                c: st.column_config.NumberColumn(format="%.4f")
                for c in finder.accuracy_columns(shown)
            },
        },
    )
    st.download_button(
        "Download CSV",
        shown.to_csv(index=False).encode(),
        "model-finder.csv",
        "text/csv",
        key="csv-model-finder",
    )

    picked = finder.selected_names(
        [p for ev in (event, cost_event) for p in (ev.selection.points if ev else [])]
    )
    picked += shown.loc[list(table_event.selection.rows), "name"].tolist() if table_event else []
    more = st.multiselect("Or pick by name", catalog.model_names(), key="mf-pick")
    shortlist = list(dict.fromkeys([*picked, *more]))
    st.subheader("Compare in depth")
    if not shortlist:
        st.caption(
            "Select models in a chart or the table (or pick them by name) to shortlist them."
        )
    else:
        st.write(f"Shortlist: {', '.join(f'`{n}`' for n in shortlist)}")
        if st.button(
            f"Compare in depth ({len(shortlist)})",
            key="mf-compare",
            type="primary",
            help="Adds them to the sidebar's selection: their published numbers "
            "appear on the other pages (e.g. Robustness), measured ones too.",
        ):
            state.add_models(shortlist)
            st.rerun()
        cmds = finder.commands(shortlist)
        if cmds is not None:
            st.caption(
                "Measure them in full (once per machine with internet for the weights; "
                "`--preprocessing weights` uses each weight's own recipe, as the "
                "published numbers do), or on your own labelled images (an image folder "
                "`<class>/*.jpg` or a CSV `path,label`; the **Your own images** page shows "
                "the result):"
            )
            st.code(
                "\n".join([*cmds[:2], "# or: which of them is best on my images?", cmds[2]]),
                language="bash",
            )
        published = [n for n in shortlist if not finder.runnable(n)]
        if published:
            st.caption(
                f"Known only by their published imagenet-testbed results (no weights "
                f"`precompute` can load): {', '.join(published)}."
            )
