"""Explorer: per-image drill-down with filters, a paged thumbnail grid and a full-size view."""

import math

import numpy as np
import pandas as pd
import streamlit as st

from beyond_inet.reference import IMAGENET_X_FACTORS
from dashboard import queries, state, ui

PAGE_SIZE = 24
COLS = 6

sel = state.current()
st.title("Explorer")
st.write("Look at the images behind the numbers: where the models fail, where they disagree.")


def _name(names: tuple[str, ...], idx: object) -> str:
    if idx is None or pd.isna(idx):  # type: ignore[call-overload]
        return "—"
    i = int(idx)  # type: ignore[call-overload]
    return names[i] if 0 <= i < len(names) else str(i)


def _top5(names: tuple[str, ...], r: object) -> str:
    idx, prob = r.topk_idx, r.topk_prob  # type: ignore[attr-defined]
    if idx is None or prob is None:
        return ""
    return "  \n".join(f"{_name(names, i)}: {p:.3f}" for i, p in zip(idx, prob, strict=False))


def _image(dataset: str, g: pd.DataFrame, sample_id: str) -> object:
    return queries.image_path(
        sel.data_roots, dataset, g["dataset_root"].dropna().unique().tolist(), sample_id
    )


with ui.guard():
    runs = sel.runs[sel.runs["model"].isin(sel.models)] if sel.has_measured else sel.runs
    if sel.source == "published":
        ui.empty(
            "The Explorer shows measured per-image predictions: choose *measured* or "
            "*both* in the sidebar.",
            hint=False,
        )
    elif runs.empty:
        ui.empty("No measured per-image predictions for the selected models.")
    else:
        ui.random_banner(runs.assign(model=runs["model"]))
        datasets = sorted(runs["dataset"].unique(), key=lambda d: (d != "imagenet-val", d))
        c1, c2, c3 = st.columns(3)
        dataset = c1.selectbox("Dataset", datasets, key="ex-dataset")
        names = queries.dataset_class_names(sel.path, sel.version, dataset)
        views, labels = queries.explorer_options(sel.path, sel.version, dataset)
        view = c2.selectbox("View", views, key="ex-view")
        models = tuple(sorted(runs[runs["dataset"] == dataset]["model"]))
        label = c3.selectbox(
            "Class",
            [None, *labels],
            key="ex-class",
            format_func=lambda i: "any class" if i is None else f"{i}: {_name(names, i)}",
        )
        with st.expander("Filters", expanded=True):
            fcols = st.columns(len(models) + 2)
            outcome = []
            for m, col in zip(models, fcols, strict=False):
                o = col.selectbox(m, ["any", "correct", "wrong"], key=f"ex-o-{m}")
                if o != "any":
                    outcome.append((m, o))
            disagree = fcols[len(models)].checkbox(
                "models disagree", key="ex-disagree", disabled=len(models) < 2
            )
            factor = None
            if dataset == "imagenet-val":
                factor = fcols[len(models) + 1].selectbox(
                    "ImageNet-X factor",
                    [None, *IMAGENET_X_FACTORS],
                    key="ex-factor",
                    format_func=lambda f: "any factor" if f is None else f,
                )
        page = max(int(st.session_state.get("ex-page", 1)) - 1, 0)
        args = (
            sel.path,
            sel.version,
            dataset,
            view,
            models,
            tuple(outcome),
            bool(disagree),
            factor,
            label,
        )
        total, det = queries.explorer_grid(*args, page, PAGE_SIZE)
        n_pages = max(1, math.ceil(total / PAGE_SIZE))
        if page >= n_pages:  # the filters shrank the result: back to its last page
            page = n_pages - 1
            st.session_state["ex-page"] = n_pages
            total, det = queries.explorer_grid(*args, page, PAGE_SIZE)
        st.number_input(f"Page (of {n_pages})", 1, n_pages, key="ex-page")
        st.caption(f"{total} images match.")
        if det.empty:
            ui.empty("No image matches these filters.", hint=False)
        else:
            chosen = st.session_state.get("ex-chosen")
            export = det.drop(columns=["dataset_root"]).assign(
                label_name=[_name(names, x) for x in det["label"]],
                pred_name=[_name(names, x) for x in det["pred"]],
            )
            st.download_button(
                "Download this page (CSV)",
                export.to_csv(index=False).encode(),
                f"explorer-{dataset}-{view}-page{page + 1}.csv",
                "text/csv",
                key="csv-explorer",
            )
            if chosen in set(det["sample_id"]):
                g = det[det["sample_id"] == chosen]
                with st.container(border=True):
                    left, right = st.columns([3, 2])
                    ui.picture(left, _image(dataset, g, chosen), 1024, chosen)
                    lab = g["label"].dropna()
                    right.markdown(
                        f"**{chosen}**  \nlabel: {_name(names, lab.iloc[0]) if len(lab) else '—'}"
                    )
                    for r in g.itertuples(index=False):
                        mark = "✓" if r.correct else "✗"
                        right.markdown(
                            f"**{r.model}** {mark}"
                            + (f" — decision: {r.decision}" if r.decision else "")
                        )
                        right.markdown(_top5(names, r))
                    if right.button("Close", key="ex-close"):
                        st.session_state.pop("ex-chosen", None)
                        st.rerun()
            cols = st.columns(COLS)
            for i, (sid, g) in enumerate(det.groupby("sample_id", sort=True)):
                col = cols[i % COLS]
                ui.picture(col, _image(dataset, g, sid), 192)
                lab = g["label"].dropna()
                col.caption(
                    f"`{sid.rsplit('/', 1)[-1]}`  \n"
                    + (f"label: {_name(names, lab.iloc[0])}" if len(lab) else "")
                )
                for r in g.itertuples(index=False):
                    top = r.decision if r.decision else _name(names, r.pred)
                    conf = (
                        ""
                        if r.confidence is None or np.isnan(r.confidence)
                        else f" {r.confidence:.2f}"
                    )
                    col.caption(
                        f"{'✓' if r.correct else '✗'} {r.model}: {top}{conf}",
                        help=_top5(names, r) or None,
                    )
                if col.button("Full size", key=f"ex-full-{i}"):
                    st.session_state["ex-chosen"] = sid
                    st.rerun()
