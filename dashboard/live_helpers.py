"""Helpers of the Live inference page: cached model loading, image sources, tables, charts.

Model loading and predictions are cached per process (``st.cache_resource``); everything
else is a plain function so the page stays a thin layout. The per-image logic lives in
:mod:`beyond_inet.live`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from beyond_inet.datasets import DATASETS, DatasetLayoutError, Sample, discover
from beyond_inet.datasets.decode import load_rgb
from beyond_inet.live import (
    EXAMPLES,
    TEMPLATE_SETS,
    ClassScore,
    ModelResult,
    Playground,
    image_to_tensor,
    label_head,
    predict,
    sweep,
)
from beyond_inet.models import LoadedModel, LoadOptions, WeightsSource, load_model
from beyond_inet.registry import UnknownNameError
from beyond_inet.transforms.perturbations import CORRUPTIONS, PERTURBATIONS

RANDOM_LABEL = "use random weights (meaningless demo)"
#: Slider / axis labels of the invariance view families (defined in beyond_inet.transforms.views).
VIEW_LABELS = {
    "scale": "scale (x the model's resize size)",
    "shift": "shift (original pixels, along the longer side)",
    "resolution": "resolution (model input side, pixels)",
}


def data_root(argv: Sequence[str] | None = None) -> Path:
    """The first of the dashboard's data roots (:func:`dashboard.state.data_roots`): where
    cue-conflict images are looked for."""
    from dashboard.state import data_roots

    return data_roots(None if argv is None else list(argv))[0]


@st.cache_data(show_spinner=False, ttl=60)
def cue_conflict_samples(root: str) -> list[Sample]:
    """The cue-conflict stimuli under ``root`` (a --data-root); [] when absent or malformed."""
    spec = DATASETS.get("cue-conflict")
    try:
        found = discover(spec, Path(root) / spec.layout.subdir)
    except (DatasetLayoutError, OSError, ValueError):
        return []
    return found.samples if found else []


def default_models(paper: Sequence[str]) -> tuple[list[str], str]:
    """Initial (multiselect selection, extra names text): the paper's models, or
    ``$BEYOND_INET_LIVE_MODELS`` (comma-separated names) when set."""
    env = os.environ.get("BEYOND_INET_LIVE_MODELS", "").strip()
    if not env:
        return list(paper), ""
    names = split_model_names([], env)
    return [n for n in names if n in paper], ", ".join(n for n in names if n not in paper)


def split_model_names(selected: Sequence[str], extra: str) -> list[str]:
    """Selected names plus comma-separated ``extra`` names, stripped, in order, no repeats."""
    out: list[str] = []
    for n in [*selected, *extra.split(",")]:
        n = n.strip()
        if n and n not in out:
            out.append(n)
    return out


@st.cache_resource(show_spinner="Loading model (first use in this process)...", max_entries=16)
def cached_model(name: str, random_weights: bool) -> LoadedModel:
    """``load_model(name)`` once per (name, weights choice) per process."""
    weights = WeightsSource("random") if random_weights else WeightsSource("hub")
    return load_model(name, LoadOptions(weights=weights))


def load_models(
    names: Sequence[str], random_weights: bool
) -> tuple[list[LoadedModel], dict[str, str]]:
    """Load each name (cached); failures become one-line messages keyed by name.

    Missing weights give :class:`WeightsUnavailableError`'s message, the CLI's.
    """
    models, errors = [], {}
    for name in names:
        try:
            models.append(cached_model(name, random_weights))
        except UnknownNameError as e:
            errors[name] = str(e)
        except Exception as e:
            errors[name] = " ".join(str(e).split()) or type(e).__name__
    return models, errors


def model_key(models: Sequence[LoadedModel]) -> tuple[tuple[str, str], ...]:
    """A hashable identity of loaded models: (name, weights)."""
    return tuple((m.name, m.weights) for m in models)


def digest(data: bytes) -> str:
    """Short content hash for cache keys."""
    return hashlib.sha256(data).hexdigest()[:20]


@st.cache_resource(show_spinner=False, max_entries=8)
def example_tensor(name: str) -> torch.Tensor:
    """A scikit-image example photo as uint8 CHW."""
    return image_to_tensor(EXAMPLES.get(name)())


def file_tensor(path: Path) -> torch.Tensor:
    """An image file (e.g. a cue-conflict stimulus) as uint8 CHW."""
    return image_to_tensor(load_rgb(path))


#: ``progress(done, total, step)``: told before each step of a long live action.
Progress = Callable[[int, int, str], None]


@contextlib.contextmanager
def progress_bar(what: str) -> Iterator[Progress]:
    """A progress bar for a long live action, shown while it runs and removed after; yields
    the ``progress(done, total, step)`` callback. Steps whose result is cached run in no
    time, so a repeat shows (at most) a flash."""
    bar = st.empty()

    def update(done: int, total: int, step: str) -> None:
        bar.progress(done / max(total, 1), text=f"{what}: {step} ({done + 1} of {total})")

    try:
        yield update
    finally:
        bar.empty()


@st.cache_resource(show_spinner=False, max_entries=128)
def _cached_predict_one(
    image_key: str,
    model_key_: tuple,
    settings_key: tuple,
    _img: torch.Tensor,
    _model: LoadedModel,
    _settings: Playground,
) -> ModelResult:
    return predict([_model], _img, _settings)[0]


def cached_predict(
    image_key: str,
    settings_key: tuple,
    img: torch.Tensor,
    models: Sequence[LoadedModel],
    settings: Playground,
    progress: Progress | None = None,
) -> list[ModelResult]:
    """:func:`beyond_inet.live.predict`, one model at a time (``progress`` hears of each),
    each cached on (image, model, settings) keys: adding a model runs only that one."""
    out = []
    for i, m in enumerate(models):
        if progress is not None:
            progress(i, len(models), m.spec.display)
        out.append(_cached_predict_one(image_key, model_key([m]), settings_key, img, m, settings))
    return out


@st.cache_resource(show_spinner=False, max_entries=512)
def _cached_label_column(
    model_key_: tuple, label: str, templates: str, _model: LoadedModel
) -> torch.Tensor:
    return label_head(_model, [label], templates)


def cached_label_head(
    model: LoadedModel,
    labels: Sequence[str],
    templates: str,
    progress: Progress | None = None,
) -> torch.Tensor:
    """:func:`beyond_inet.live.label_head`, one label at a time (a label's column depends on
    that label only; ``progress`` hears of each), each cached per (model, label,
    templates): editing one label encodes only that one."""
    columns = []
    for i, label in enumerate(labels):
        if progress is not None:
            progress(i, len(labels), label)
        columns.append(_cached_label_column(model_key([model]), label, templates, model))
    return torch.cat(columns, dim=1)


@st.cache_resource(show_spinner="Sweeping...", max_entries=32)
def cached_sweep(
    image_key: str,
    models_key: tuple,
    settings_key: tuple,
    param: str,
    targets_key: tuple,
    _img: torch.Tensor,
    _models: Sequence[LoadedModel],
    _settings: Playground,
) -> pd.DataFrame:
    """:func:`beyond_inet.live.sweep`, cached on explicit keys."""
    return sweep(_models, _img, _settings, param, dict(targets_key))


def settings_key(settings: Playground) -> tuple:
    """A hashable identity of playground settings."""
    return astuple(settings)


def topk_frame(scores: Sequence[ClassScore]) -> pd.DataFrame:
    """Ranked classes as a table: class, probability (0-1)."""
    return pd.DataFrame(
        {"class": [s.name for s in scores], "probability": [s.prob for s in scores]}
    )


def score_table(scores: Sequence[ClassScore]) -> None:
    """Show ranked classes with their probability in %: the number first, in a narrow
    column, so it stays readable when four models share the page width (a long class name
    is cut instead, and shows in full on hover)."""
    df = topk_frame(scores)
    st.dataframe(
        df.assign(probability=df["probability"] * 100)[["probability", "class"]],
        hide_index=True,
        width="stretch",
        column_config={
            "probability": st.column_config.NumberColumn("p", format="%.1f%%", width="small"),
            "class": st.column_config.TextColumn("class"),
        },
    )


def seen_caption(result: ModelResult) -> str:
    """Caption under the model's input image."""
    return f"what {result.label} saw: {result.input_size} x {result.input_size}"


def sweep_figure(df: pd.DataFrame, x_label: str, current: float | None) -> go.Figure:
    """One line per model: confidence in its original top-1 vs the swept value."""
    from dashboard.figures import colour

    fig = go.Figure()
    for (model, label), part in df.groupby(["model", "label"], sort=False):
        fig.add_trace(
            go.Scatter(
                x=part["value"],
                y=part["confidence"],
                mode="lines+markers",
                name=str(label),
                line_color=colour(str(model)),
            )
        )
    if current is not None:
        fig.add_vline(x=current, line_dash="dot", line_color="gray")
    fig.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=x_label,
        yaxis_title="p(original top-1)",
        yaxis_range=[0, 1.02],
        legend={"orientation": "h", "y": -0.3},
    )
    return fig


def template_label(name: str) -> str:
    """How a template set is named in the UI."""
    n = len(TEMPLATE_SETS.get(name)())
    return f"{name} ({n} templates)" if n > 1 else f"{name}: “{TEMPLATE_SETS.get(name)()[0]}”"


def param_label(param: str) -> str:
    """Axis / option label of a sweep parameter."""
    if param in PERTURBATIONS:
        return PERTURBATIONS.get(param).label
    return VIEW_LABELS.get(param, f"{param} view")


def current_value(settings: Playground, param: str) -> float | None:
    """Where the current settings sit on ``param``'s axis (None when not on it)."""
    if param == "rotation":
        return settings.rotation
    if param in CORRUPTIONS:
        return float(settings.severity) if settings.corruption == param else 0.0
    family, _, arg = settings.view.partition(":")
    if family == param and arg:
        try:
            return float(arg)
        except ValueError:
            return None
    return None


def describe_settings(settings: Playground) -> str:
    """A short human description of non-default settings."""
    parts = []
    if settings.view != "standard":
        parts.append(f"view {settings.view}")
    if settings.rotation:
        parts.append(f"rotated {settings.rotation:g}°")
    if settings.corruption:
        parts.append(f"{settings.corruption} severity {settings.severity}")
    return ", ".join(parts) or "none"
