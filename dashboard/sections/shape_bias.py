"""Shape bias: per-category shape decisions per model against humans, and a gallery."""

import streamlit as st

from beyond_inet.datasets.cue_conflict import parse_stimulus_name
from dashboard import figures, frames, published, queries, state, ui

sel = state.current()
st.title("Shape bias")
st.write(
    "On cue-conflict images (the shape of one category, the texture of another), does a "
    "model decide by shape, like people, or by texture? 1.0 = always shape."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel, ("cue-conflict",))
    std = comb[comb["view"] == "standard"]
    overall = std[std["metric"] == "shape_bias"]
    per_cat = std[std["metric"].str.startswith("shape_bias:")].copy()
    per_cat["category"] = per_cat["metric"].str.split(":", n=1).str[1]
    per_cat = per_cat[per_cat["value"].notna()]
    humans = published.human_shape_bias()
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif overall.empty and per_cat.empty:
        ui.empty("No shape-bias results for these models and this source.")
    else:
        ui.chart(figures.shape_bias_plot(per_cat, overall, humans), "shape-bias")
        st.caption(
            f"Grey band: the {len(humans)} human observers' range; black line: their "
            f"mean ({humans['shape_bias'].mean():.3f}). Circles: per shape category "
            "(measured); diamonds: each model's overall shape bias (hollow = published)."
        )
        rows = std[std["metric"].isin(["shape_bias", "shape_accuracy", "texture_accuracy"])]
        table = (
            rows.pivot_table(index=["display", "source"], columns="metric", values="value")
            .round(4)
            .reset_index()
        )
        ui.table(
            table,
            "shape-bias",
            column_config={  # missing = not published
                c: st.column_config.NumberColumn(format="%.4f") for c in table.columns[2:]
            },
        )
        with st.expander("Human observers"):
            ui.table(humans, "human-shape-bias")
    measured = tuple(
        m for m in sel.models if m in set(sel.runs[sel.runs["dataset"] == "cue-conflict"]["model"])
    )
    if sel.source != "published" and measured:
        st.subheader("Error consistency")
        correct = queries.per_image_values(
            sel.path, sel.version, "cue-conflict", "standard", measured, "correct"
        )
        ec = frames.error_consistency_matrix(correct, published.human_trials())
        ui.chart(figures.error_consistency_heatmap(ec), "error-consistency")
        ui.table(ec.round(3).reset_index(names="model"), "error-consistency")
        st.caption(
            "Cohen's kappa of trial-by-trial agreement (both right or both wrong, right = the "
            "shape's category) beyond what the two accuracies predict (Geirhos et al. 2020): "
            "0 = independent mistakes, 1 = the same mistakes. Columns `subject-01..10`: the "
            "human observers of model-vs-human, matched by stimulus file name."
        )
    st.subheader("Cue-conflict gallery")
    if sel.source == "published" or not measured:
        ui.empty(
            "The gallery shows each measured model's decision on cue-conflict images: "
            "run precompute on the cue-conflict dataset (and pick the measured source)."
        )
    else:
        c1, c2 = st.columns(2)
        n = c1.slider("Images", 4, 24, 8, step=4, key="sb-n")
        seed = c2.number_input("Shuffle", 0, 10_000, 0, key="sb-seed")
        g = queries.cue_conflict_gallery(sel.path, sel.version, measured, int(n), int(seed))
        st.download_button(
            "Download these decisions (CSV)",
            g.drop(columns=["dataset_root"]).to_csv(index=False).encode(),
            "cue-conflict-gallery.csv",
            "text/csv",
            key="csv-gallery",
        )
        cols = st.columns(4)
        for i, (sid, grp) in enumerate(g.groupby("sample_id", sort=True)):
            col = cols[i % 4]
            p = queries.image_path(
                sel.data_roots, "cue-conflict", grp["dataset_root"].dropna().unique().tolist(), sid
            )
            shape_texture = sid.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            ui.picture(col, p, 160, shape_texture)
            try:
                shape, texture = parse_stimulus_name(sid)
            except ValueError:  # not a stimulus name (a store can hold anything)
                shape = texture = None
            col.markdown(
                "  \n".join(
                    f"`{m}`: "
                    + (
                        f":green[**{d}**]"
                        if d == shape
                        else f":orange[{d}]"
                        if d == texture
                        else str(d)
                    )
                    for m, d in zip(grp["model"], grp["decision"], strict=True)
                )
            )
        st.caption(
            "Each model's decision: :green[**green**] = the shape's category, "
            ":orange[orange] = the texture's, plain = neither (a stimulus is named "
            "`<shape><i>-<texture><j>`)."
        )
