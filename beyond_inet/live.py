"""Live per-image inference: how each model sees one image, and how that changes.

One decoded uint8 CHW image goes through an optional perturbation (:class:`Playground`:
rotation, an ImageNet-C corruption, one invariance view of :mod:`beyond_inet.transforms.views` — the
same code the precompute uses) and every model's preprocessing; each model returns its top-k
ImageNet classes and the exact input it saw (un-normalised back to uint8 for display). CLIP
zero-shot models can also rank user-typed labels, and any perturbation parameter can be
swept to chart each model's confidence in its original top-1 class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from PIL import Image

from beyond_inet.datasets.decode import pil_to_tensor, to_rgb
from beyond_inet.models import LoadedModel
from beyond_inet.models.contract import head_fp32, logits_of, run_trunk
from beyond_inet.reference import imagenet_class_names, openai_templates
from beyond_inet.registry import Registry, UnknownNameError
from beyond_inet.settings import DEFAULT_LOGIT_SCALE
from beyond_inet.transforms.perturbations import CORRUPTIONS, PERTURBATIONS, corrupt, rotate
from beyond_inet.transforms.preprocess import Preprocessing
from beyond_inet.transforms.views import VIEW_FAMILIES, VIEW_GRIDS, View, format_number, parse_view

TOPK = 5

#: Example photos scikit-image ships offline: display name -> loader of an HWC uint8 array.
EXAMPLES: Registry[Callable[[], np.ndarray]] = Registry("example image")


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        out = getattr(skimage.data, name)()
        return out[index] if index is not None else out

    return load


for _label, _fn in (
    ("chelsea (cat)", _skimage("chelsea")),
    ("coffee", _skimage("coffee")),
    ("rocket", _skimage("rocket")),
    ("astronaut", _skimage("astronaut")),
    ("motorcycle", _skimage("stereo_motorcycle", 0)),
):
    EXAMPLES.add(_label, _fn)

#: Prompt template sets for custom CLIP labels (data): name -> format strings.
SINGLE_TEMPLATE = ("a photo of a {}.",)


TEMPLATE_SETS: Registry[Callable[[], tuple[str, ...]]] = Registry("template set")
TEMPLATE_SETS.add("openai-80", openai_templates)
TEMPLATE_SETS.add("single", lambda: SINGLE_TEMPLATE)


def available_view_families() -> list[str]:
    """Invariance view families the playground offers: those with a grid in
    :data:`beyond_inet.transforms.views.VIEW_GRIDS` (``standard`` excluded)."""
    return [f for f in VIEW_FAMILIES if f != "standard" and f in VIEW_GRIDS]


def view_grid(family: str) -> tuple[float, ...]:
    """The precompute's grid of a view family (:data:`beyond_inet.transforms.views.VIEW_GRIDS`)."""
    if family not in VIEW_GRIDS:
        raise UnknownNameError(
            f"No grid for view family {family!r}. Known: {', '.join(VIEW_GRIDS)}."
        )
    return tuple(VIEW_GRIDS[family])


def view_name(family: str, value: float) -> str:
    """``('scale', 1.5) -> 'scale:1.5'`` (canonical, via :func:`parse_view`);
    ``standard`` stays ``standard``."""
    if family == "standard":
        return "standard"
    return parse_view(f"{family}:{format_number(value)}").name


@dataclass(frozen=True)
class Playground:
    """Perturbation settings: rotation, then an ImageNet-C corruption, then a view.

    ``corruption=None`` means no corruption; severity 0 with a corruption is ImageNet-C's
    clean 224 crop. ``view`` is any name :func:`beyond_inet.transforms.views.parse_view` accepts.
    """

    view: str = "standard"
    rotation: float = 0.0
    corruption: str | None = None
    severity: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.corruption is not None:
            CORRUPTIONS.get(self.corruption)
        if not 0 <= self.severity <= 5:
            raise ValueError(f"severity must be 0-5, got {self.severity}")

    def with_value(self, param: str, value: float) -> Playground:
        """These settings with sweep parameter ``param`` set to ``value``.

        ``param``: ``rotation``, a corruption name (value = severity), or a view family.
        """
        if param == "rotation":
            return replace(self, rotation=float(value))
        if param in CORRUPTIONS:
            return replace(self, corruption=param, severity=int(value))
        if param in VIEW_FAMILIES:
            return replace(self, view=view_name(param, value))
        raise UnknownNameError(
            PERTURBATIONS.unknown_message(param) + f" View families: {', '.join(VIEW_FAMILIES)}."
        )


def sweep_grid(param: str) -> tuple[float, ...]:
    """Values a sweep over ``param`` visits (see :meth:`Playground.with_value`)."""
    if param in PERTURBATIONS:
        return PERTURBATIONS.get(param).grid
    return view_grid(param)


@dataclass(frozen=True)
class ClassScore:
    """One ranked class: ImageNet index (or label position), name, probability."""

    index: int
    name: str
    prob: float


@dataclass
class ModelResult:
    """What one model made of the image: top-k, the input it saw, or an error."""

    model: str
    label: str
    random_weights: bool
    topk: list[ClassScore] = field(default_factory=list)
    seen: np.ndarray | None = None  # HWC uint8, the model's input un-normalised
    input_size: int = 0
    features: torch.Tensor | None = None  # CLIP: unit-norm image embedding [D]
    error: str | None = None

    @property
    def top1(self) -> ClassScore | None:
        """The top class, or None after an error."""
        return self.topk[0] if self.topk else None


def image_to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """A PIL image (any mode) or HWC uint8 RGB / HW gray array -> uint8 CHW RGB tensor."""
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 array, got {img.dtype}")
        img = Image.fromarray(img)
    return pil_to_tensor(to_rgb(img))


def perturb(img: torch.Tensor, settings: Playground) -> torch.Tensor:
    """Apply rotation then the corruption of ``settings`` to a uint8 CHW image."""
    out = rotate(img, settings.rotation)
    if settings.corruption is not None:
        out = corrupt(out, settings.corruption, settings.severity, settings.seed)
    return out


def unnormalize(x: torch.Tensor, pp: Preprocessing) -> np.ndarray:
    """Normalised float CHW -> HWC uint8 (what the model saw, displayable)."""
    mean = torch.tensor(pp.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(pp.std, dtype=torch.float32).view(-1, 1, 1)
    rgb = (x.detach().float().cpu() * std + mean).mul(255).round().clamp(0, 255)
    return rgb.to(torch.uint8).permute(1, 2, 0).numpy()


def is_clip(model: LoadedModel) -> bool:
    """True for zero-shot models with a text tower (those can rank custom labels)."""
    return "text_labels" in model.module.capabilities


def _forward(model: LoadedModel, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits [B, 1000] from the model's own forward and, for CLIP, the unit-norm image
    features [B, D] of that same pass (captured from the image tower's output)."""
    module = model.module
    if "text_labels" not in module.capabilities:
        return logits_of(module, batch), None
    t = run_trunk(module, batch)
    return head_fp32(module, t), module.embedding(t)


def _error_text(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:300]}"


def predict(
    models: Sequence[LoadedModel],
    img: torch.Tensor,
    settings: Playground = Playground(),
    k: int = TOPK,
) -> list[ModelResult]:
    """Every model's top-``k`` on ``img`` (uint8 CHW) perturbed by ``settings``.

    A model that cannot run the view (e.g. a fixed-size model at another resolution) gets
    a result with ``error`` set; the others are unaffected.
    """
    names = imagenet_class_names()
    view = parse_view(settings.view)
    perturbed = perturb(img, settings)
    inputs: dict[Preprocessing, torch.Tensor] = {}  # models with one recipe share the input
    out = []
    for m in models:
        res = ModelResult(m.name, m.spec.display, m.is_random)
        try:
            if m.preprocessing not in inputs:
                inputs[m.preprocessing] = view.transform(perturbed, m.preprocessing)
            x = inputs[m.preprocessing]
            res.input_size = int(view.input_size(m.preprocessing))
            res.seen = unnormalize(x, m.preprocessing)
            with torch.inference_mode():
                logits, feats = _forward(m, x[None])
            probs = torch.softmax(logits[0], dim=-1)
            p, i = probs.topk(min(k, probs.numel()))
            res.topk = [
                ClassScore(int(c), names[int(c)], float(q)) for q, c in zip(p, i, strict=True)
            ]
            res.features = None if feats is None else feats[0]
        except Exception as e:  # one model failing a view must not hide the others
            res.error = _error_text(e)
        out.append(res)
    return out


# --------------------------------------------------------------------------------------
# CLIP: custom labels
# --------------------------------------------------------------------------------------


def parse_labels(text: str) -> list[str]:
    """Comma-separated labels -> stripped, non-empty, de-duplicated (case-insensitive) list.

    Raises ValueError (one line) with fewer than two labels.
    """
    out: list[str] = []
    seen: set[str] = set()
    for part in text.split(","):
        label = " ".join(part.split())
        if label and label.lower() not in seen:
            seen.add(label.lower())
            out.append(label)
    if len(out) < 2:
        raise ValueError("Type at least two different labels, separated by commas.")
    return out


def label_head(
    model: LoadedModel, labels: Sequence[str], templates: str = "openai-80"
) -> torch.Tensor:
    """The [D, len(labels)] zero-shot text head for ``labels`` (open_clip's recipe: mean of
    unit-norm template embeddings, re-normalised) with the named template set."""
    if not is_clip(model):
        raise ValueError(f"{model.name} is not a CLIP zero-shot model; custom labels need CLIP.")
    return model.module.text_head_for(list(labels), list(TEMPLATE_SETS.get(templates)()))


def rank_labels(
    model: LoadedModel, features: torch.Tensor, head: torch.Tensor, labels: Sequence[str]
) -> list[ClassScore]:
    """Softmax over ``logit_scale * features @ head``, sorted by probability (descending).

    ``features``: the unit-norm image embedding of :class:`ModelResult`; the logit scale is
    the model's (``settings['logit_scale']``), as for its ImageNet head.
    """
    scale = float(model.settings.get("logit_scale", DEFAULT_LOGIT_SCALE))
    probs = torch.softmax(scale * features.float().cpu() @ head, dim=-1)
    order = torch.argsort(probs, descending=True)
    return [ClassScore(int(i), labels[int(i)], float(probs[i])) for i in order]


# --------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------


def sweep(
    models: Sequence[LoadedModel],
    img: torch.Tensor,
    settings: Playground,
    param: str,
    targets: dict[str, int],
    values: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Each model's probability of its class ``targets[model]`` as ``param`` takes ``values``
    (default: its grid), other settings held fixed.

    Returns columns ``model, label, value, confidence`` (NaN where a model cannot run a value).
    """
    values = list(values if values is not None else sweep_grid(param))
    variants = [settings.with_value(param, v) for v in values]
    views: dict[str, View] = {s.view: parse_view(s.view) for s in variants}
    images = [perturb(img, s) for s in variants]
    inputs: dict[tuple[Preprocessing, int], torch.Tensor | None] = {}
    rows = []
    for m in models:
        conf = [float("nan")] * len(values)
        if m.name in targets:
            for idx, probs in _batched_probs(m, [views[s.view] for s in variants], images, inputs):
                conf[idx] = float(probs[targets[m.name]])
        rows += [
            {"model": m.name, "label": m.spec.display, "value": float(v), "confidence": c}
            for v, c in zip(values, conf, strict=True)
        ]
    return pd.DataFrame(rows, columns=["model", "label", "value", "confidence"])


def _batched_probs(
    model: LoadedModel,
    views: Sequence[View],
    images: Sequence[torch.Tensor],
    inputs: dict[tuple[Preprocessing, int], torch.Tensor | None],
) -> list[tuple[int, torch.Tensor]]:
    """(index, softmax) for each (view, image) the model can run; same-size inputs batched.

    ``inputs`` caches transformed inputs per (preprocessing, index) across models.
    """
    groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for i, (view, im) in enumerate(zip(views, images, strict=True)):
        key = (model.preprocessing, i)
        if key not in inputs:
            try:
                inputs[key] = view.transform(im, model.preprocessing)
            except Exception:
                inputs[key] = None
        x = inputs[key]
        if x is not None:
            groups.setdefault(tuple(x.shape), []).append((i, x))
    out = []
    for items in groups.values():
        try:
            with torch.inference_mode():
                logits, _ = _forward(model, torch.stack([x for _, x in items]))
        except Exception:
            continue
        probs = torch.softmax(logits, dim=-1)
        out += [(i, probs[j]) for j, (i, _) in enumerate(items)]
    return out
