"""Figure builders: plain functions from DataFrames to Plotly figures (no Streamlit).

Measured and published values of the same model share a colour; published bars are hatched
and published markers hollow, so both sources read side by side.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from beyond_inet.catalog import logit
from beyond_inet.models import PAPER_MODELS
from dashboard.finder import hover_text, is_accuracy, is_log_axis, label

PATTERN = {"measured": "", "published": "/"}
SYMBOL = {"measured": "circle", "published": "circle-open"}
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Plotly

#: The paper's models keep the first colours of the palette, in this order.
FIXED = PAPER_MODELS


def colour(name: str) -> str:
    """A model's colour, the same in every chart: the paper's models have fixed colours,
    others one picked by a stable hash of the name (random-weights marks ignored)."""
    base = _base(name)
    if base in FIXED:
        return PALETTE[FIXED.index(base)]
    h = int(hashlib.md5(base.encode()).hexdigest(), 16)
    return PALETTE[len(FIXED) + h % (len(PALETTE) - len(FIXED))]


def _colours(names: list[str]) -> dict[str, str]:
    """Each name's :func:`colour`; a name whose colour another name in the same chart
    already has takes the next free palette colour (in name order, so the same selection
    gets the same colours in every chart)."""
    by_base: dict[str, str] = {}
    used: set[str] = set()
    for base in sorted({_base(n) for n in names}, key=lambda b: (b not in FIXED, b)):
        c = colour(base)
        if c in used and len(used) < len(PALETTE):
            start = PALETTE.index(c)
            c = next(
                PALETTE[(start + k) % len(PALETTE)]
                for k in range(1, len(PALETTE))
                if PALETTE[(start + k) % len(PALETTE)] not in used
            )
        by_base[base] = c
        used.add(c)
    return {n: by_base[_base(n)] for n in set(names)}


def _base(name: str) -> str:
    """A display name without its marks (`` ⚠ random weights``, `` (paper)``)."""
    return name.split(" ⚠")[0].split(" (")[0]


def _errors(df: pd.DataFrame) -> dict[str, object]:
    """error_y arguments from ci_low / ci_high (none when every interval is NaN)."""
    if not {"ci_low", "ci_high"} <= set(df.columns) or df[["ci_low", "ci_high"]].isna().all().all():
        return {}
    return {
        "error_y": (df["ci_high"] - df["value"]).clip(lower=0),
        "error_y_minus": (df["value"] - df["ci_low"]).clip(lower=0),
    }


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 40, "r": 20, "t": 60, "b": 40},
        legend={"title": None},
    )  # the Streamlit theme styles it
    return fig


def empty_figure(message: str) -> go.Figure:
    """A blank figure carrying a message (used where a chart has nothing to show)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", 200)


def _scaled(df: pd.DataFrame, percent: bool) -> pd.DataFrame:
    """A copy with ``value`` and its interval in percent when ``percent``."""
    d = df.copy()
    if percent:
        for c in ("value", "ci_low", "ci_high"):
            d[c] = d[c] * 100.0
    return d


#: Above this many series (model x source) :func:`grouped_bars` draws horizontal bars.
MANY_SERIES = 6


def _many_series_layout(fig: go.Figure, title: str, n_cat: int, n_series: int) -> go.Figure:
    """:func:`grouped_bars`' layout for many series (horizontal bars): categories down the y
    axis (first on top), the height growing with the bars, the legend above the plot."""
    top = 80 + 20 * math.ceil(n_series / 3)  # the title, then the legend (~3 per row)
    height = top + 60 + n_cat * (11 * n_series + 18)
    fig.update_yaxes(title=None)
    fig = _layout(fig, title, int(height))
    fig.update_layout(
        title={"text": title, "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
        legend={"title": None, "orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        margin={"l": 40, "r": 20, "t": top, "b": 40},
        bargap=0.25,
    )
    return fig


def grouped_bars(
    df: pd.DataFrame,
    x: str,
    title: str,
    y_title: str,
    reference: float | None = None,
    percent: bool = False,
    category_order: list[str] | None = None,
) -> go.Figure:
    """Bars of ``value`` per ``x``, one colour per ``display``, hatched when published, with
    95% intervals; an optional reference line. With more than :data:`MANY_SERIES` series
    (model x source) the bars run horizontally, one row per ``x`` with room for each bar
    and the legend above the plot, so 8 models stay readable."""
    if df.empty:
        return empty_figure("no data")
    d = _scaled(df, percent)
    d["series"] = d["display"] + np.where(d["source"] == "published", " (published)", "")
    n_series = d[["display", "source"]].drop_duplicates().shape[0]
    horizontal = n_series > MANY_SERIES
    order = category_order or (list(dict.fromkeys(d[x])) if horizontal else None)
    errors = _errors(d)
    if horizontal:  # the value runs along x: its interval too
        errors = {k.replace("error_y", "error_x"): v for k, v in errors.items()}
    fig = px.bar(
        d,
        **({"y": x, "x": "value", "orientation": "h"} if horizontal else {"x": x, "y": "value"}),
        color="display",
        pattern_shape="source",
        pattern_shape_map=PATTERN,
        barmode="group",
        color_discrete_map=_colours(d["display"].tolist()),
        category_orders={x: order} if order else None,
        hover_data={"series": True, "ci_low": ":.3f", "ci_high": ":.3f"},
        **errors,
    )
    line = None if reference is None else reference * (100.0 if percent else 1.0)
    if horizontal:
        if line is not None:
            fig.add_vline(x=line, line_dash="dash", line_color="grey")
        fig.update_xaxes(title=y_title)
        return _many_series_layout(fig, title, d[x].nunique(), n_series)
    if line is not None:
        fig.add_hline(y=line, line_dash="dash", line_color="grey")
    fig.update_yaxes(title=y_title)
    return _layout(fig, title)


def profile_chart(normalised: pd.DataFrame) -> go.Figure:
    """Radar chart of each row's properties on their own scale (see
    :func:`dashboard.frames.normalised`: 0 = worst, 1 = best). The radial axis is drawn
    between the first two spokes, so its tick labels never sit on a property's name."""
    if normalised.empty or normalised.shape[1] == 0:
        return empty_figure("no properties to compare")
    cats = list(normalised.columns)
    fig = go.Figure()
    colours = _colours(list(normalised.index))
    for name, row in normalised.iterrows():
        r = row.tolist()
        fig.add_trace(
            go.Scatterpolar(
                r=[*r, r[0]],
                theta=[*cats, cats[0]],
                name=str(name),
                line_color=colours[str(name)],
                connectgaps=True,
                line_dash="dot" if str(name).endswith("(published)") else "solid",
                fill="toself",
                opacity=0.55,
            )
        )
    between = 90 - 180 / max(len(cats), 1)  # clockwise from the top spoke
    fig.update_layout(
        polar={
            "angularaxis": {"rotation": 90, "direction": "clockwise"},
            "radialaxis": {
                "range": [0, 1],
                "tickvals": [0, 0.5, 1],
                "ticktext": ["0", "0.5", "1"],
                "angle": between,
                "tickangle": between,
                "tickfont": {"size": 10},
            },
        }
    )
    return _layout(fig, "Model profiles (each property on its own scale: 0 worst, 1 best)", 460)


def ranking_chart(rank: pd.DataFrame) -> go.Figure:
    """Horizontal bars of the weighted score, best at the top, in each model's colour."""
    if rank.empty or rank["score"].isna().all():
        return empty_figure("give at least one property a weight")
    d = rank.reset_index(names="model").iloc[::-1]
    fig = px.bar(
        d,
        x="score",
        y="model",
        orientation="h",
        range_x=[0, 1],
        color="model",
        color_discrete_map=_colours(d["model"].tolist()),
        text=d["score"].map(lambda s: f"{s:.2f}" if np.isfinite(s) else ""),
    )
    fig.update_yaxes(title=None, categoryorder="array", categoryarray=list(d["model"]))
    fig.update_layout(showlegend=False)
    return _layout(
        fig, "Your ranking (weighted mean of the properties on their own scale)", 140 + 40 * len(d)
    )


def _reliability_panel(fig: go.Figure, b: pd.DataFrame, width: float, row: int, col: int) -> None:
    """One model's reliability bars, shaded gap and diagonal in one subplot."""
    legend = row == 1 and col == 1
    centre = np.minimum(b["bin"].to_numpy() * width + width / 2, 1.0)
    acc, conf = b["accuracy"].to_numpy(), b["mean_confidence"].to_numpy()
    fig.add_trace(
        go.Bar(
            x=centre,
            y=acc,
            width=width,
            name="accuracy",
            marker_color="#1f77b4",
            showlegend=legend,
            customdata=np.c_[b["count"], conf],
            hovertemplate="acc %{y:.3f}<br>conf %{customdata[1]:.3f}"
            "<br>n=%{customdata[0]}<extra></extra>",
        ),
        row=row,
        col=col,
    )
    fig.add_trace(
        go.Bar(
            x=centre,
            y=conf - acc,
            base=acc,
            width=width,
            name="gap",
            marker_color="rgba(214,39,40,0.35)",
            marker_line_color="rgba(214,39,40,0.9)",
            showlegend=legend,
            hovertemplate="gap %{y:.3f}<extra></extra>",
        ),
        row=row,
        col=col,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfect",
            line={"dash": "dash", "color": "grey"},
            showlegend=legend,
        ),
        row=row,
        col=col,
    )


def reliability_diagram(
    bins: pd.DataFrame,
    n_bins: int,
    title: str,
    scaled: pd.DataFrame | None = None,
    temperatures: dict[str, str] | None = None,
) -> go.Figure:
    """Per model: accuracy per confidence bin (bars), the gap to perfect calibration shaded,
    the diagonal, and each bin's count in the hover. With ``scaled`` (the bins after
    temperature scaling) a second row shows them, titled with each model's temperature
    (``temperatures``: model -> its text, e.g. ``T = 1.31``)."""
    if bins.empty:
        return empty_figure("no labelled predictions")
    models = sorted(bins["model"].unique())
    two = scaled is not None and not scaled.empty
    temps = temperatures or {}
    titles = [f"{m}<br>raw" if two else m for m in models]
    if two:
        titles += [
            f"{m}<br>scaled, {temps[m]}" if m in temps else f"{m}<br>not scaled" for m in models
        ]
    fig = make_subplots(
        rows=2 if two else 1,
        cols=len(models),
        subplot_titles=titles,
        shared_yaxes=True,
        vertical_spacing=0.16,
    )
    width = 1.0 / n_bins
    for j, m in enumerate(models, start=1):
        _reliability_panel(fig, bins[bins["model"] == m], width, 1, j)
        if two:
            assert scaled is not None
            _reliability_panel(fig, scaled[scaled["model"] == m], width, 2, j)
        for r in range(1, 3 if two else 2):
            fig.update_xaxes(range=[0, 1], title="confidence", row=r, col=j)
    for r in range(1, 3 if two else 2):
        fig.update_yaxes(range=[0, 1], title="accuracy", row=r, col=1)
    fig.update_layout(barmode="overlay")
    fig.update_annotations(font_size=12)
    fig = _layout(fig, title, 740 if two else 380)
    if two:  # room for the two-line panel titles under the figure's title
        fig.update_layout(margin_t=110)
    return fig


def calibration_before_after(df: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """``metric`` raw and after temperature scaling per dataset, one panel per model
    (``df``: display, dataset, metric, value; the scaled metric is ``<metric>_ts``)."""
    d = df[df["metric"].isin([metric, f"{metric}_ts"])]
    if d.empty:
        return empty_figure("no calibration after temperature scaling")
    d = d.assign(calibration=np.where(d["metric"] == metric, "raw", "temperature-scaled"))
    fig = px.bar(
        d,
        x="dataset",
        y="value",
        color="calibration",
        barmode="group",
        facet_col="display",
        color_discrete_map={"raw": "#d62728", "temperature-scaled": "#2ca02c"},
        category_orders={"calibration": ["raw", "temperature-scaled"]},
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.update_yaxes(title=None)
    fig.update_yaxes(title=metric.upper(), col=1)
    return _layout(fig, title, 400)


def confidence_histogram(bins: pd.DataFrame, n_bins: int, title: str) -> go.Figure:
    """Share of images per confidence bin, one line per model."""
    if bins.empty:
        return empty_figure("no labelled predictions")
    d = bins.copy()
    d["share"] = d["count"] / d.groupby("model")["count"].transform("sum")
    d["confidence"] = np.minimum(d["bin"] / n_bins + 0.5 / n_bins, 1.0)
    fig = px.bar(
        d,
        x="confidence",
        y="share",
        color="model",
        barmode="group",
        color_discrete_map=_colours(d["model"].tolist()),
    )
    fig.update_xaxes(range=[0, 1])
    return _layout(fig, title, 340)


def ood_score_histograms(scores: pd.DataFrame, ood_label: str, score_label: str) -> go.Figure:
    """Overlaid histograms (share of each side's images) of an OOD score on the
    in-distribution images and on one OOD set (``in_distribution``, ``value``: the rows of
    :func:`dashboard.queries.ood_scores`); the less they overlap, the better the detector."""
    if scores.empty:
        return empty_figure("no per-image scores stored for this run")
    d = scores.assign(
        images=np.where(scores["in_distribution"], "ImageNet val (in-distribution)", ood_label)
    )
    fig = px.histogram(
        d,
        x="value",
        color="images",
        barmode="overlay",
        histnorm="probability",
        opacity=0.6,
        nbins=40,
        category_orders={"images": ["ImageNet val (in-distribution)", ood_label]},
        color_discrete_map={"ImageNet val (in-distribution)": "#4c78a8", ood_label: "#e45756"},
    )
    fig.update_xaxes(title=f"{score_label} (higher = more in-distribution)")
    fig.update_yaxes(title="share of images")
    return _layout(fig, f"{score_label}: in-distribution vs {ood_label}", 360)


def curves(df: pd.DataFrame, y_title: str, title: str, percent: bool = True) -> go.Figure:
    """``value`` vs ``x`` per ``display`` (hollow markers for published), one panel per
    ``family``, 95% intervals as error bars."""
    if df.empty:
        return empty_figure("no data")
    d = _scaled(df, percent)
    d["x_plot"] = np.where(d["x"].notna(), d["x"], d["x_raw"]) if "x_raw" in d else d["x"]
    fig = px.line(
        d,
        x="x_plot",
        y="value",
        color="display",
        symbol="source",
        symbol_map=SYMBOL,
        facet_col="family" if "family" in d else None,
        markers=True,
        color_discrete_map=_colours(d["display"].tolist()),
        **_errors(d),
    )
    fig.update_xaxes(matches=None, title=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_yaxes(title=y_title, col=1)
    return _layout(fig, title, 400)


def shape_bias_plot(
    per_category: pd.DataFrame, overall: pd.DataFrame, humans: pd.DataFrame
) -> go.Figure:
    """model-vs-human style: categories down the side (the overall value on top), the
    fraction of shape decisions across (texture 0 .. shape 1), one marker per model (hollow
    when published; a diamond for the overall value), and the human observers' mean with
    their range shaded."""
    fig = go.Figure()
    overall_label = "ALL (overall)"
    rows = [per_category.assign(kind="category")]
    if len(overall):
        rows.append(overall.assign(category=overall_label, kind="overall"))
    d = pd.concat(
        [r for r in rows if len(r)] or [per_category.assign(kind="category")], ignore_index=True
    )
    colours = _colours(list(d.get("display", pd.Series(dtype=str))))
    if len(humans):
        lo, hi = humans["shape_bias"].min(), humans["shape_bias"].max()
        mean = humans["shape_bias"].mean()
        fig.add_vrect(x0=lo, x1=hi, fillcolor="rgba(120,120,120,0.2)", line_width=0)
        fig.add_vline(
            x=mean,
            line_color="black",
            line_width=2,
            annotation_text=f"humans {mean:.2f}",
            annotation_position="top",
        )
    for (display, source), g in d.groupby(["display", "source"], sort=True):
        symbols = ["diamond" if k == "overall" else "circle" for k in g["kind"]]
        if source == "published":
            symbols = [f"{s}-open" for s in symbols]
        fig.add_trace(
            go.Scatter(
                x=g["value"],
                y=g["category"],
                mode="markers",
                name=f"{display}" + (" (published)" if source == "published" else ""),
                marker={
                    "color": colours[display],
                    "size": [14 if k == "overall" else 10 for k in g["kind"]],
                    "symbol": symbols,
                    "line": {"width": 2, "color": colours[display]},
                },
                hovertemplate="%{y}: %{x:.3f}<extra>%{fullData.name}</extra>",
            )
        )
    cats = sorted(per_category["category"].unique()) if len(per_category) else []
    order = ([overall_label] if len(overall) else []) + cats
    fig.update_xaxes(
        range=[-0.02, 1.02], title="fraction of shape decisions  (0 = texture, 1 = shape)"
    )
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], title=None)
    return _layout(fig, "Shape vs texture bias", 160 + 26 * max(len(order), 4))


def heatmap(df: pd.DataFrame, x: str, y: str, title: str, percent: bool = True) -> go.Figure:
    """A value heatmap (e.g. ImageNet-C corruption x severity), annotated."""
    if df.empty:
        return empty_figure("no data")
    table = df.pivot_table(index=y, columns=x, values="value", aggfunc="mean")
    z = table.to_numpy() * (100 if percent else 1)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in table.columns],
            y=[str(i) for i in table.index],
            colorscale="Viridis",
            text=np.vectorize(lambda v: "" if math.isnan(v) else f"{v:.1f}")(z),
            texttemplate="%{text}",
        )
    )
    return _layout(fig, title, 120 + 28 * len(table.index))


def measured_vs_published(df: pd.DataFrame) -> go.Figure:
    """Scatter of measured against published numbers with the y = x line."""
    d = df.dropna(subset=["measured", "published"])
    if d.empty:
        return empty_figure("no measured number has a published counterpart yet")
    lo = float(min(d["measured"].min(), d["published"].min()))
    hi = float(max(d["measured"].max(), d["published"].max()))
    fig = px.scatter(
        d,
        x="published",
        y="measured",
        color="model",
        symbol="unit",
        hover_data=["dataset", "metric", "difference"],
    )
    fig.add_trace(
        go.Scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="y = x",
            line={"dash": "dash", "color": "grey"},
        )
    )
    return _layout(fig, "Measured vs published", 420)


# --------------------------------------------------------------------------- model finder

#: Tick positions of logit-scaled accuracy axes (in %).
LOGIT_TICKS = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99)


#: Candidate ticks of a logit accuracy axis (in %), from which those in view are thinned.
LOGIT_CANDIDATES = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    *range(20, 91, 5),
    92,
    94,
    95,
    96,
    97,
    98,
    98.5,
    99,
    99.5,
    99.8,
    99.9,
)


def label_positions(
    px_: np.ndarray, py: np.ndarray, all_x: np.ndarray, all_y: np.ndarray
) -> list[str]:
    """Text positions for labelled points that keep each label inside the plot: towards the
    middle from whichever edge the point is nearer, alternating up and down for neighbours."""

    def frac(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
        lo, hi = float(np.nanmin(ref)), float(np.nanmax(ref))
        return (v - lo) / (hi - lo) if hi > lo else np.full(len(v), 0.5)

    fx, fy = frac(px_, all_x), frac(py, all_y)
    order = np.argsort(px_)
    out = [""] * len(px_)
    for rank, i in enumerate(order):
        vertical = (
            "bottom" if fy[i] > 0.85 else "top" if fy[i] < 0.15 else ("top", "bottom")[rank % 2]
        )
        out[i] = f"{vertical} {'right' if fx[i] < 0.5 else 'left'}"
    return out


def logit_ticks(values: np.ndarray, most: int = 9) -> list[float]:
    """Tick positions (in %) for a logit axis over ``values`` (0-1): the candidates inside
    the data's range (a little beyond), at least three, thinned evenly to at most ``most``
    so that labels never crowd."""
    v = values[np.isfinite(values)] * 100
    if not v.size:
        return list(LOGIT_TICKS)
    lo, hi = float(v.min()), float(v.max())
    inside = [t for t in LOGIT_CANDIDATES if lo - 1e-9 <= t <= hi + 1e-9]
    if len(inside) < 3:  # a narrow range: the nearest candidates on each side, and integers
        dense = sorted({*LOGIT_CANDIDATES, *range(1, 100)})
        below = [t for t in dense if t < lo][-1:]
        above = [t for t in dense if t > hi][:1]
        inside = below + [t for t in dense if lo <= t <= hi] + above
    if len(inside) > most:
        keep = np.unique(np.linspace(0, len(inside) - 1, most).round().astype(int))
        inside = [inside[i] for i in keep]
    return inside


def _tick_text(t: float) -> str:
    return f"{t:g}"


def _finder_axis(values: pd.Series, col: str, scale: str) -> tuple[np.ndarray, dict[str, object]]:
    """Plot coordinates and axis settings: accuracies in %, logit-spaced when asked (ticks
    chosen for the data's range)."""
    v = values.to_numpy(float)
    if is_accuracy(col) and scale == "logit":
        ticks = logit_ticks(v)
        return logit(v), {
            "title": f"{label(col)} (%, logit scale)",
            "tickvals": list(logit(np.array(ticks) / 100)),
            "ticktext": [_tick_text(t) for t in ticks],
        }
    if is_accuracy(col):
        return v * 100, {"title": f"{label(col)} (%)"}
    if is_log_axis(col):
        return v, {"title": label(col), "type": "log"}
    return v, {"title": label(col)}


#: The finder's point colour per catalogue library (Paul Tol's bright scheme).
LIBRARY_COLOURS = {"timm": "#4477AA", "open_clip": "#EE6677", "imagenet-testbed": "#228833"}


def finder_scatter(
    df: pd.DataFrame,
    x: str,
    y: str,
    scale: str,
    front: np.ndarray,
    fit: object | None = None,
    title: str = "",
) -> go.Figure:
    """Every model of ``df`` on two properties: the Pareto front joined and ringed, the
    paper's models as labelled stars, the baseline fit (effective robustness) with its band
    when the axes have one. Each point's ``customdata`` is ``[name, x, y]``: a selection
    maps back to model names (:func:`dashboard.finder.selected_names`); the hover shows
    every property."""
    ok = np.isfinite(df[x].to_numpy(float)) & np.isfinite(df[y].to_numpy(float))
    d = df[ok]
    if d.empty:
        return empty_figure("no model has both of these properties")
    front = front[ok]
    xs, xaxis = _finder_axis(d[x], x, scale)
    ys, yaxis = _finder_axis(d[y], y, scale)
    text = (d["hover"] if "hover" in d else hover_text(d)).to_numpy(dtype=str)
    # plain lists (not a numpy array, which Plotly would ship as a typed array): each
    # point's [name, x, y], so a selection hands back model names
    custom = np.empty(len(d), dtype=object)
    custom[:] = [
        [str(n), float(a), float(b)]
        for n, a, b in zip(d["name"], d[x].to_numpy(float), d[y].to_numpy(float), strict=True)
    ]
    template = (
        f"%{{text}}<br>{x}: %{{customdata[1]:.4f}}<br>{y}: %{{customdata[2]:.4f}}<extra></extra>"
    )

    def points(mask: np.ndarray, **kw: object) -> go.Scatter:
        return go.Scatter(
            x=xs[mask],
            y=ys[mask],
            customdata=custom[mask].tolist(),
            text=text[mask],
            hovertemplate=template,
            **kw,
        )

    fig = go.Figure()
    for lib, colour_ in LIBRARY_COLOURS.items():
        m = (d["library"] == lib).to_numpy()
        if m.any():
            fig.add_trace(
                points(
                    m,
                    mode="markers",
                    name=lib,
                    marker={"size": 6, "color": colour_, "opacity": 0.55},
                )
            )
    if front.any():
        order = np.flatnonzero(front)[np.argsort(xs[front])]
        fig.add_trace(
            go.Scatter(
                x=xs[order],
                y=ys[order],
                customdata=custom[order].tolist(),
                text=text[order],
                hovertemplate=template,
                mode="lines+markers",
                name="Pareto front",
                line={"color": "black", "width": 1.5},
                marker={
                    "size": 9,
                    "color": "rgba(0,0,0,0)",
                    "line": {"color": "black", "width": 1.5},
                },
            )
        )
    paper = (d["paper_model"] != "").to_numpy() if "paper_model" in d else np.zeros(len(d), bool)
    if paper.any():
        fig.add_trace(
            points(
                paper,
                mode="markers+text",
                name="the paper's models",
                texttemplate=[str(v) for v in d.loc[paper, "paper_model"]],
                textposition=label_positions(xs[paper], ys[paper], xs, ys),
                cliponaxis=False,
                marker={
                    "symbol": "star",
                    "size": 15,
                    "color": "#CCBB44",
                    "line": {"color": "black", "width": 1},
                },
            )
        )
    if fit is not None:
        grid = np.linspace(max(float(d[x].quantile(0.02)), 0.01), min(float(d[x].max()), 0.99), 60)
        lo, hi = fit.band(grid)  # type: ignore[attr-defined]
        gx, _ = _finder_axis(pd.Series(grid), x, scale)
        ly, _ = _finder_axis(pd.Series(lo), y, scale)
        hy, _ = _finder_axis(pd.Series(hi), y, scale)
        cy, _ = _finder_axis(pd.Series(fit.predict(grid)), y, scale)  # type: ignore[attr-defined]
        fig.add_trace(
            go.Scatter(
                x=np.r_[gx, gx[::-1]],
                y=np.r_[hy, ly[::-1]],
                fill="toself",
                fillcolor="rgba(120,120,120,0.18)",
                line={"width": 0},
                name="baseline band (±1.96 sd)",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=gx,
                y=cy,
                mode="lines",
                name="ImageNet-1k baseline fit",
                line={"color": "grey", "dash": "dash"},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(**yaxis)
    fig.update_layout(dragmode="select", legend={"orientation": "h", "y": -0.18})
    return _layout(fig, title or f"{label(y)} vs {label(x)}", 560)


# --------------------------------------------------------------------------- transfer


def transfer_tasks_chart(tasks: pd.DataFrame) -> go.Figure:
    """Probe top-1 per VTAB task (grouped by natural / specialized / structured)."""
    order = list(dict.fromkeys(tasks.sort_values(["group_order", "task"])["task"]))
    return grouped_bars(
        tasks,
        "task",
        "Linear-probe top-1 per task",
        "top-1 (%)",
        percent=True,
        category_order=order,
    )


def transfer_groups_chart(groups: pd.DataFrame) -> go.Figure:
    """Mean probe top-1 per VTAB group and overall."""
    return grouped_bars(
        groups,
        "group",
        "Mean top-1 per group",
        "top-1 (%)",
        percent=True,
        category_order=["natural", "specialized", "structured", "all tasks"],
    )


def transfer_gap_chart(gap: pd.DataFrame) -> go.Figure:
    """Measured minus published top-1 per task (percentage points), one colour per model."""
    if gap.empty:
        return empty_figure("no model has both measured and published numbers")
    fig = px.bar(
        gap,
        x="task",
        y="gap (pp)",
        color="model",
        barmode="group",
        color_discrete_map=_colours(gap["model"].tolist()),
    )
    fig.add_hline(y=0, line_color="grey")
    return _layout(fig, "Measured minus published (percentage points)")


# --------------------------------------------------------------------------- CKA


def cka_heatmap(cells: pd.DataFrame, model_a: str, model_b: str) -> go.Figure:
    """The layer x layer CKA matrix: model A's layers down, model B's across (input at the
    bottom-left), on a fixed 0-1 colour scale."""
    if cells.empty:
        return empty_figure("no CKA cells")
    table = cells.pivot(index="row", columns="col", values="cka").sort_index().sort_index(axis=1)
    rows = cells.drop_duplicates("row").set_index("row")["layer_a"].sort_index()
    cols = cells.drop_duplicates("col").set_index("col")["layer_b"].sort_index()
    z = table.to_numpy()
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(cols),
            y=list(rows),
            zmin=0,
            zmax=1,
            colorscale="Magma",
            colorbar={"title": "CKA"},
            hovertemplate=(
                f"{model_a}: %{{y}}<br>{model_b}: %{{x}}<br>CKA %{{z:.3f}}<extra></extra>"
            ),
        )
    )
    # square cells whatever the shape (a 6 x 2 matrix stays 6 x 2, not a stretched strip),
    # the axes only as long as the matrix (no grid lines across the empty width)
    fig.update_xaxes(title=f"{model_b} layer", type="category", constrain="domain", showgrid=False)
    fig.update_yaxes(
        title=f"{model_a} layer",
        type="category",
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
        showgrid=False,
    )
    side = max(420, min(900, 160 + 30 * len(rows)))
    return _layout(fig, f"Linear CKA: {model_a} x {model_b}", side)


def cka_diagonal(cells: pd.DataFrame, model_a: str, model_b: str) -> go.Figure:
    """The diagonal profile: CKA between layers at the same relative depth."""
    from beyond_inet.scoring.cka import diagonal_profile

    if cells.empty:
        return empty_figure("no CKA cells")
    table = cells.pivot(index="row", columns="col", values="cka").sort_index().sort_index(axis=1)
    prof = diagonal_profile(table.to_numpy())
    fig = go.Figure(go.Scatter(x=prof[:, 0], y=prof[:, 1], mode="lines+markers", name="CKA"))
    fig.update_xaxes(title="relative depth (0 = first tap, 1 = last)", range=[-0.02, 1.02])
    fig.update_yaxes(title="CKA", range=[0, 1.05])
    return _layout(fig, f"Corresponding depths: {model_a} vs {model_b}", 360)


def error_consistency_heatmap(ec: pd.DataFrame) -> go.Figure:
    """Models (rows) x models and human observers (columns): Cohen's kappa, -1..1."""
    if ec.empty:
        return empty_figure("no cue-conflict decisions")
    z = ec.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in ec.columns],
            y=[str(i) for i in ec.index],
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
            colorbar={"title": "kappa"},
            text=np.vectorize(lambda v: "" if math.isnan(v) else f"{v:.2f}")(z),
            texttemplate="%{text}",
        )
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return _layout(fig, "Error consistency on cue-conflict", 160 + 40 * len(ec.index))


def paired_difference(summary: dict[str, object], a: str, b: str) -> go.Figure:
    """Each model's accuracy and the paired difference A - B with its 95% interval (none
    when stored without resamples): ``summary`` as :func:`dashboard.frames.paired_summary`
    gives it."""
    lo, hi = summary["ci"]  # type: ignore[misc]
    diff = float(summary["diff"])  # type: ignore[arg-type]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo = hi = diff
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.18)
    for name, acc in ((a, summary["accuracy_a"]), (b, summary["accuracy_b"])):
        fig.add_trace(
            go.Bar(x=[100 * float(acc)], y=[name], orientation="h", name=name,  # type: ignore[arg-type]
                   marker_color=colour(name), showlegend=False),
            row=1, col=1,
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[100 * diff], y=["A - B"], mode="markers", marker={"size": 12, "color": "black"},
            error_x={"type": "data", "symmetric": False, "array": [100 * (hi - diff)],
                     "arrayminus": [100 * (diff - lo)]},
            showlegend=False,
        ),
        row=1, col=2,
    )  # fmt: skip
    fig.add_vline(x=0, line_dash="dash", line_color="grey", row=1, col=2)
    fig.update_xaxes(title="accuracy (%)", row=1, col=1)
    fig.update_xaxes(title="A - B (percentage points, 95% paired interval)", row=1, col=2)
    return _layout(fig, "Accuracy and the paired difference", 260)


def own_ranking_chart(ranking: pd.DataFrame, title: str) -> go.Figure:
    """Top-1 per model (best first) with its 95% interval, marked against the best
    (:func:`dashboard.frames.own_ranking`)."""
    if ranking.empty:
        return empty_figure("no results")
    from dashboard.frames import OWN_MARKS

    d = ranking.assign(
        label=[
            f"{m}  {OWN_MARKS.get(k, '')}".rstrip()
            for m, k in zip(ranking["model"], ranking["mark"], strict=True)
        ]
    )
    fig = go.Figure(
        go.Bar(
            x=d["top1"] * 100,
            y=d["label"],
            orientation="h",
            marker_color=[colour(m) for m in d["model"]],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": ((d["top1_high"] - d["top1"]) * 100).clip(lower=0),
                "arrayminus": ((d["top1"] - d["top1_low"]) * 100).clip(lower=0),
            },
            hovertemplate="%{y}: %{x:.1f}%<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="top-1 on the test images (%)")
    return _layout(fig, title, 120 + 40 * len(d))


def confusion_heatmap(matrix: pd.DataFrame, model: str) -> go.Figure:
    """Counts of true (rows) x predicted (columns) class of one model."""
    if matrix.empty:
        return empty_figure("no predictions")
    fig = px.imshow(
        matrix.to_numpy(),
        x=[str(c) for c in matrix.columns],
        y=[str(c) for c in matrix.index],
        color_continuous_scale="Blues",
        text_auto=True,
        aspect="auto",
        labels={"x": "predicted", "y": "true class", "color": "images"},
    )
    return _layout(fig, f"{model}: confusion matrix (test images)", 200 + 28 * len(matrix))
