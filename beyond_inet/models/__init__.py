"""Model zoo: names -> specs -> loaded models, one module per model family.

Names: the built-in paper models (``deit3_21k``, ``convnext_base_21k``, ``vit_clip``,
``convnext_clip``), ``timm:<timm model name>`` and ``open_clip:<arch>:<pretrained tag>``.
Every loaded model is a :class:`LoadedModel` whose module follows the
:class:`~beyond_inet.models.contract.Classifier` contract.

This package imports no model library until a family is used: :data:`FAMILIES` maps each
prefix to the module that implements it, imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from beyond_inet import catalog
from beyond_inet.models.base import (
    PAPER_SPECS,
    PAPER_SUPERVISED_PREPROCESSING,
    CheckpointMismatchError,
    LoadedModel,
    LoadOptions,
    ModelFamily,
    ModelSpec,
    PreprocessingChoice,
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
    "LoadOptions",
    "LoadedModel",
    "ModelSpec",
    "PreprocessingChoice",
    "WeightsSource",
    "WeightsUnavailableError",
    "expand_model_names",
    "family",
    "fetch_weights",
    "load_model",
    "resolve_spec",
]


@dataclass(frozen=True)
class FamilyRef:
    """A model family by module path; the module (and its library) is imported on first use.
    The module exposes ``FAMILY``, an object of the :class:`ModelFamily` protocol."""

    module: str

    def get(self) -> ModelFamily:
        """The family object (imports its module)."""
        return importlib.import_module(self.module).FAMILY  # type: ignore[no-any-return]


FAMILIES: Registry[FamilyRef] = Registry("model family")
FAMILIES.add("timm", FamilyRef("beyond_inet.models.timm_family"))
FAMILIES.add("open_clip", FamilyRef("beyond_inet.models.open_clip_family"))

MODELS: Registry[ModelSpec] = Registry("model")
for _spec in PAPER_SPECS:
    MODELS.add(_spec.name, _spec)

PAPER_MODELS: tuple[str, ...] = tuple(MODELS)


def family(name: str) -> ModelFamily:
    """The family object for a prefix (``timm`` / ``open_clip``)."""
    return FAMILIES.get(name).get()


def expand_model_names(names: list[str]) -> list[str]:
    """Expand ``all`` to the paper's four models; keep order, drop duplicates."""
    out: list[str] = []
    for n in names:
        for m in PAPER_MODELS if n == "all" else (n,):
            if m not in out:
                out.append(m)
    return out


def resolve_spec(name: str) -> ModelSpec:
    """Name -> ModelSpec; unknown names raise :class:`UnknownNameError` with suggestions."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in FAMILIES:
        return family(prefix).parse(name, rest)
    if sep and prefix == catalog.PUBLISHED_ONLY:
        raise UnknownNameError(
            f"{name!r} is a published imagenet-testbed result, not weights precompute can "
            "load; the model finder shows its numbers. Measure a timm or open_clip model "
            "('timm:<name>', 'open_clip:<arch>:<tag>') instead."
        )
    if name not in MODELS:
        raise UnknownNameError(
            MODELS.unknown_message(name)
            + " Any timm model as 'timm:<name>', any open_clip model as"
            " 'open_clip:<arch>:<tag>'."
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
