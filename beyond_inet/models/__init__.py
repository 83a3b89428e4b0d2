"""Model zoo: names -> specs -> loaded models, one module per model family.

Names: the built-in paper models (``deit3_21k``, ``convnext_base_21k``, ``vit_clip``,
``convnext_clip``) and ``<family>:<rest>`` for each registered family: ``timm:<timm model
name>``, ``open_clip:<arch>:<pretrained tag>``, ``hf:<repo id>[@<revision>]`` (Hugging Face
``transformers`` image classifiers).
Every loaded model is a :class:`LoadedModel` whose module follows the
:class:`~beyond_inet.models.contract.Classifier` contract.

This package imports no model library until a family is used: :data:`FAMILIES` maps each
prefix to the module that implements it, imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from beyond_inet.models.base import (
    FAMILIES,
    PAPER_SPECS,
    PAPER_SUPERVISED_PREPROCESSING,
    PUBLISHED_ONLY,
    CheckpointMismatchError,
    FamilyRef,
    LoadedModel,
    LoadOptions,
    ModelFamily,
    ModelSpec,
    PreprocessingChoice,
    UnsupportedModelError,
    WeightsSource,
    WeightsUnavailableError,
)
from beyond_inet.registry import Registry, UnknownNameError
from beyond_inet.settings import DEFAULT_LOGIT_SCALE

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "FAMILIES",
    "MODELS",
    "PAPER_MODELS",
    "PAPER_SUPERVISED_PREPROCESSING",
    "CheckpointMismatchError",
    "FamilyRef",
    "LoadOptions",
    "LoadedModel",
    "ModelSpec",
    "PreprocessingChoice",
    "UnsupportedModelError",
    "WeightsSource",
    "WeightsUnavailableError",
    "expand_model_names",
    "family",
    "family_syntax",
    "fetch_weights",
    "load_model",
    "resolve_spec",
]


FAMILIES.add(
    "timm",
    FamilyRef(
        "beyond_inet.models.timm_family",
        "timm:<name>",
        "any timm model, e.g. timm:resnet50.a1_in1k",
    ),
)
FAMILIES.add(
    "open_clip",
    FamilyRef(
        "beyond_inet.models.open_clip_family",
        "open_clip:<arch>:<tag>",
        "any open_clip model as a zero-shot classifier",
    ),
)
FAMILIES.add(
    "hf",
    FamilyRef(
        "beyond_inet.models.hf_family",
        "hf:<repo id>[@<revision>]",
        "a Hugging Face transformers ImageNet-1k classifier, e.g. hf:google/vit-base-patch16-224",
    ),
)

MODELS: Registry[ModelSpec] = Registry("model")
for _spec in PAPER_SPECS:
    MODELS.add(_spec.name, _spec)

PAPER_MODELS: tuple[str, ...] = tuple(MODELS)


def family(name: str) -> ModelFamily:
    """The family object for a prefix (``timm`` / ``open_clip`` / ``hf``)."""
    return FAMILIES.get(name).get()


def expand_model_names(names: list[str]) -> list[str]:
    """Expand ``all`` to the paper's four models; keep order, drop duplicates."""
    out: list[str] = []
    for n in names:
        for m in PAPER_MODELS if n == "all" else (n,):
            if m not in out:
                out.append(m)
    return out


def family_syntax() -> str:
    """How each registered family's names are written: ``'timm:<name>', ...`` (imports no
    model library)."""
    return ", ".join(f"'{ref.syntax}'" for _, ref in FAMILIES.items())


def resolve_spec(name: str) -> ModelSpec:
    """Name -> ModelSpec; unknown names raise :class:`UnknownNameError` with suggestions."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in FAMILIES:
        return family(prefix).parse(name, rest)
    if sep and prefix == PUBLISHED_ONLY:
        raise UnknownNameError(
            f"{name!r} is a published imagenet-testbed result, not weights precompute can "
            f"load; the model finder shows its numbers. Measure a model of a family "
            f"({family_syntax()}) instead."
        )
    if name not in MODELS:
        raise UnknownNameError(
            MODELS.unknown_message(name) + f" Or name a model of a family: {family_syntax()}."
        )
    return MODELS.get(name)


def load_model(name: str, opts: LoadOptions | None = None) -> LoadedModel:
    """Resolve ``name`` and load it; fails fast (seconds) without weights."""
    spec = resolve_spec(name)
    return family(spec.family).load(spec, opts or LoadOptions())


def fetch_weights(
    name: str, opts: LoadOptions | None = None, log: Callable[[str], None] = print
) -> None:
    """Download, or verify in the local cache, everything an offline run of ``name`` needs
    (weights; for CLIP also the zero-shot head)."""
    spec = resolve_spec(name)
    family(spec.family).fetch(spec, opts or LoadOptions(), log)
