"""Overview: one row per model, one column per property, profiles and a weighted ranking."""

import streamlit as st

from dashboard import figures, frames, queries, state, ui

sel = state.current()
st.title("Overview")
st.write(
    "Which model should you pick? Each column is one property the paper looks at "
    "beyond ImageNet accuracy; the best value shown is highlighted."
)
ui.source_note(sel)
with ui.guard():
    comb = ui.shown_metrics(sel)
    if not sel.models:
        ui.empty("Select at least one model in the sidebar.", hint=False)
    elif comb.empty:
        ui.empty("Nothing to show for these models and this source.")
    else:
        num, text = frames.overview(comb)
        props = [p for p in frames.PROPERTIES if p.title in num.columns]
        if not props:
            ui.empty("None of the overview properties is available for these models.")
        else:
            mask = frames.best_mask(num[[p.title for p in props]])
            measured = tuple(num[num["source"] == "measured"]["model"])
            tested = [t for t in frames.PAIRED_TESTS if t in text.columns]
            if tested and len(measured) > 1:
                level = st.select_slider(
                    "Significance level of the paired tests",
                    [0.01, 0.05, 0.1],
                    value=0.05,
                    key="ov-alpha",
                )
                for title in tested:

                    def p_values(best: str, others: list[str], title: str = title) -> list[float]:
                        return queries.overview_p_values(
                            sel.path, sel.version, title, best, tuple(others)
                        )

                    tie = frames.not_significantly_worse(num, title, p_values, level)
                    text.loc[tie, title] = text.loc[tie, title] + " ≈"
            shown = text.reset_index(names="model")
            mask = mask.reset_index(drop=True)
            styled = shown.style.apply(
                lambda col: [
                    "font-weight: bold; background-color: rgba(46,160,67,0.25)"
                    if col.name in mask and mask.loc[i, col.name]
                    else ""
                    for i in range(len(col))
                ],
                axis=0,
            )
            st.subheader("Properties")
            ui.table(shown, "overview", styled=styled)
            st.caption(
                " · ".join(f"**{p.title}**: {p.help}" for p in props)
                + ". Values in % where the property is an accuracy; [95% BCa bootstrap "
                "interval] where measured (none for ECE: binned ECE is biased upwards, and "
                "the Calibration page gives its debiased counterpart with an interval). "
                "**≈**: measured value not significantly worse "
                "than the column's best measured model on the same images, Holm-corrected "
                "across the models shown: McNemar's exact test for ImageNet top-1, a paired "
                "bootstrap (500 resamples) for ECE, ImageNet-X error ratio and shape bias; "
                "the averages over several datasets are not tested."
            )
            notes = comb[(comb["dataset"] == "robustness") & comb["detail"].notna()]
            notes = notes[~notes["detail"].str.startswith("mean of 7 ")]
            if len(notes):
                st.caption(
                    "Robustness average over the benchmarks present, marked (k/7): shown but not "
                    "highlighted or ranked, as it is not comparable with a mean of all 7 "
                    "(ImageNet-C and -Hard lower it): "
                    + "; ".join(f"{r.display} ({r.origin}): {r.detail}" for r in notes.itertuples())
                )
            twins = frames.same_weights(tuple(num["model"]))
            if twins:
                st.caption(
                    "Same weights under two names: "
                    + "; ".join(
                        f"**{a}** (the paper's numbers) = **{b}** (its library's)" for a, b in twins
                    )
                )
            norm = frames.normalised(num[[p.title for p in props]])
            st.subheader("Profiles")
            ui.chart(figures.profile_chart(norm), "profiles")
            st.subheader("What matters to you")
            st.write(
                "Weight each property (0 = ignore). The score is the weighted mean of the "
                "properties on their own scale (accuracies and shape bias 0-1; ECE and "
                "error ratio from 0 to the largest shown, lower is better). Only models "
                "with a number for every weighted property are ranked; the others are "
                "listed below with what they miss."
            )
            cover = frames.coverage(num)
            st.caption(
                "Coverage of the models shown: " + " · ".join(f"{t}: {c}" for t, c in cover.items())
            )
            cols = st.columns(len(props))
            start = frames.default_weights(num[[p.title for p in props] + ["random_weights"]])
            weights = {
                p.title: c.slider(p.title, 0, 5, start[p.title], key=f"w-{p.title}")
                for p, c in zip(props, cols, strict=True)
            }
            include = st.checkbox(
                "Include random-weights / synthetic runs",
                key="w-random",
                help="Their numbers are meaningless; off by default.",
            )
            rank, left = frames.ranking(
                num[[p.title for p in props] + ["random_weights"]], weights, include_random=include
            )
            ui.chart(figures.ranking_chart(rank), "ranking")
            ui.table(rank.reset_index(names="model").round(3), "ranking")
            if len(left):
                groups = left.groupby("reason", sort=False).groups
                st.caption(
                    "Not ranked — "
                    + "; ".join(
                        f"{reason}: {', '.join(f'**{m}**' for m in rows)}"
                        for reason, rows in groups.items()
                    )
                )
