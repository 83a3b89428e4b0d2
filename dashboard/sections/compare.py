"""Compare two models: is the difference real? The paired comparison on the same images that
``precompute`` stored (table ``paired``), read, never recomputed here."""

import streamlit as st

from beyond_inet import catalog
from dashboard import figures, frames, queries, state, ui

sel = state.current()
st.title("Compare two models")
st.write(
    "Two models on the same images: how often each is right where the other is wrong, "
    "whether the accuracy gap could be noise (McNemar's exact test, a paired bootstrap "
    "interval), and how alike their mistakes are (error consistency)."
)
with ui.guard():
    runs = queries.latest_runs(sel.path, sel.version) if sel.has_measured else None
    if sel.source == "published":
        ui.empty(
            "A paired comparison needs per-image results: choose **measured** in the sidebar.",
            hint=False,
        )
    elif runs is None or runs.empty:
        ui.empty("No measured runs in the store: a paired comparison needs per-image results.")
    else:
        models = [m for m in sel.models if m in set(runs["model"])] or sorted(runs["model"])
        c1, c2, c3, c4 = st.columns(4)
        a = c1.selectbox("Model A", models, key="cmp-a")
        b = c2.selectbox("Model B", models, index=min(1, len(models) - 1), key="cmp-b")
        shared = sorted(
            set(runs[runs["model"] == a]["dataset"]) & set(runs[runs["model"] == b]["dataset"])
        )
        if a == b or not shared:
            ui.empty("Pick two different models that were run on a common dataset.", hint=False)
        else:
            shared = sorted(shared, key=lambda d: (d != "imagenet-val", d))  # val first
            dataset = c3.selectbox("Dataset", shared, key="cmp-dataset")
            views, _ = queries.explorer_options(sel.path, sel.version, dataset)
            view = c4.selectbox("View", views, key="cmp-view")
            stored = queries.stored_paired(sel.path, sel.version, a, b, dataset, view)
            s = frames.paired_summary(stored, a)
            out = queries.paired_outcomes(sel.path, sel.version, a, b, dataset, view)
            if s is None and out.empty:
                ui.empty("The two runs share no image in this view.", hint=False)
            elif s is None:
                ui.empty(
                    f"No stored paired comparison of **{a}** and **{b}** on {dataset} "
                    f"({view}): `precompute` stores one for every pair of models it runs "
                    "together on the same images (runs stored by separate invocations get "
                    "theirs from the next run of both). To store it: `python -m precompute "
                    f"--model {a},{b} --dataset {dataset} --data-root DIR` with the settings "
                    "of these runs (their runs are reused, not repeated).",
                    hint=False,
                )
            else:
                level = st.select_slider(
                    "Significance level", [0.001, 0.01, 0.05, 0.1], value=0.05, key="cmp-alpha"
                )
                lo, hi = s["ci"]
                ui.random_banner(runs[runs["model"].isin([a, b]) & (runs["dataset"] == dataset)])
                m1, m2, m3, m4 = st.columns(4)
                m1.metric(f"A: {a}", f"{100 * s['accuracy_a']:.2f}%")
                m2.metric(f"B: {b}", f"{100 * s['accuracy_b']:.2f}%")
                m3.metric("A - B", f"{100 * s['diff']:+.2f} pp")
                if s["n_boot"]:
                    m3.caption(
                        f"95% paired interval [{100 * lo:+.2f}, {100 * hi:+.2f}] pp "
                        f"({s['n_boot']:,} resamples)"
                    )
                else:
                    m3.caption("no interval: stored with `--bootstrap 0`")
                m4.metric("Error consistency (kappa)", f"{s['kappa']:.3f}")
                verdict = "significant" if s["p_value"] < level else "not significant"
                st.markdown(
                    f"McNemar's exact test on {s['n']:,} images: p = {s['p_value']:.3g} — "
                    f"the difference is **{verdict}** at {level}."
                )
                st.caption(
                    "The paired comparison `precompute` stored with these two runs (table "
                    "`paired`)."
                )
                ui.chart(figures.paired_difference(s, a, b), "compare-difference")
                ui.table(s["table"].reset_index(names=""), "compare-2x2")
            if not out.empty:  # the images themselves, read for the Explorer
                dis = out[out["correct_a"] != out["correct_b"]]
                st.subheader(f"Images where exactly one is right ({len(dis):,})")
                n_a = int((out["correct_a"] & ~out["correct_b"]).sum())
                n_b = len(dis) - n_a
                st.caption("See the pictures in the **Explorer**, filtered to these images:")
                chosen = None
                sides = (
                    ("a", f"A right, B wrong ({n_a:,})", {a: "correct", b: "wrong"}),
                    ("b", f"A wrong, B right ({n_b:,})", {a: "wrong", b: "correct"}),
                )
                for col, (key, label, outcomes) in zip(st.columns(4), sides, strict=False):
                    tip = ", ".join(f"{m} {o}" for m, o in outcomes.items())
                    if col.button(label, key=f"cmp-open-{key}", help=tip, width="stretch"):
                        chosen = outcomes
                if chosen is not None:
                    for key in frames.EXPLORER_DEFAULTS:
                        st.session_state.pop(key, None)
                    st.session_state.update(
                        frames.explorer_filters(dataset, view, chosen, tuple(runs["model"]))
                    )
                    st.switch_page("sections/explorer.py")
                ui.table(
                    dis.rename(
                        columns={
                            "correct_a": f"{a} right",
                            "correct_b": f"{b} right",
                            "pred_a": f"{a} top-1",
                            "pred_b": f"{b} top-1",
                        }
                    ),
                    "compare-disagree",
                )

st.subheader("What they cost on your hardware")
with ui.guard():
    measured = frames.profile_table(queries.profiles(sel.path, sel.version))
    every = list(dict.fromkeys([*sel.models, *measured["model"]]))
    shown = every[:12]
    costs = frames.cost_table(measured, shown, catalog.published_throughput())
    st.caption(
        "Measured by `python -m precompute --profile --model NAME[,NAME]` on the device and "
        "precision it ran with (throughput of the forward precompute runs, at batch 1 and at "
        "the best batch; latency per batch-1 forward; peak memory: CUDA allocation, or the "
        "process's peak RSS on a CPU), beside timm's published throughput (RTX 4090 with "
        "AMP, i7-12700H fp32; by architecture). — where there is no number."
    )
    if measured.empty:
        st.caption("No model in this store has been profiled yet.")
    if len(every) > len(shown):
        st.caption(
            f"The first {len(shown)} of {len(every)} models (the sidebar's, then the profiled)."
        )
    ui.table(costs, "compare-cost", styled=frames.shown_numbers(costs, frames.COST_DECIMALS))
