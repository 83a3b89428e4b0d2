"""What a model is, independent of its library: specs, weights sources, load options, the
loaded-model record, the family protocol and the registry of families. Cheap to import (no
torch)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from beyond_inet.registry import Registry, UnknownNameError
from beyond_inet.settings import DEFAULT_LOGIT_SCALE
from beyond_inet.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

if TYPE_CHECKING:
    from collections.abc import Callable

    from beyond_inet.models.contract import Classifier

PreprocessingChoice = Literal["paper", "weights"]
#: The library (and name prefix) of the model catalogue's rows known only by their published
#: results (imagenet-testbed's own models): ``precompute`` cannot load them.
PUBLISHED_ONLY = "imagenet-testbed"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (the message says what to do)."""


class CheckpointMismatchError(RuntimeError):
    """A ``--checkpoint`` file does not fit the model architecture or cannot be read."""


class UnsupportedModelError(UnknownNameError):
    """A model that exists but cannot be evaluated here (e.g. its head is not the 1000
    ImageNet-1k classes, or its preprocessing cannot be expressed); the message says why.
    An :class:`UnknownNameError`, so callers refuse it as bad input."""


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a family (``timm`` / ``open_clip`` / ``hf``), an architecture and a
    weights tag, with display metadata.

    ``paper_preprocessing`` is the paper's own evaluation recipe where it differs from the
    weights' config; ``None`` means the weights' config is what the paper used.
    """

    name: str
    family: str
    arch: str
    tag: str | None = None
    label: str = ""
    paper_preprocessing: Preprocessing | None = None
    description: str = ""

    @property
    def hub_id(self) -> str:
        """A human-readable weights id, as the family formats it (``ModelFamily.hub_id``;
        imports the family's module)."""
        return FAMILIES.get(self.family).get().hub_id(self)

    @property
    def display(self) -> str:
        """The paper's label when there is one, else the name."""
        return self.label or self.name


@dataclass(frozen=True)
class WeightsSource:
    """Where weights come from: the hub cache, a local checkpoint file, or random init."""

    kind: Literal["hub", "checkpoint", "random"] = "hub"
    checkpoint: Path | None = None

    def __post_init__(self) -> None:
        if (self.kind == "checkpoint") != (self.checkpoint is not None):
            raise ValueError("a checkpoint path is required exactly when kind == 'checkpoint'")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: weights source, preprocessing choice, CLIP settings, head cache dir."""

    weights: WeightsSource = WeightsSource()
    preprocessing: PreprocessingChoice = "paper"
    logit_scale: float = DEFAULT_LOGIT_SCALE
    cache_dir: Path | None = None


@dataclass
class LoadedModel:
    """A model ready for evaluation: ``module`` is a
    :class:`~beyond_inet.models.contract.Classifier` (``trunk`` / ``head`` / ``features``;
    calling it gives ``[B, 1000]`` logits from a normalised float batch)."""

    name: str
    spec: ModelSpec
    module: Classifier
    preprocessing: Preprocessing
    weights: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        """True when the weights are random (smoke tests; numbers mean nothing)."""
        return self.weights == "random"

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of everything that defines this model's numbers."""
        return {
            "model": self.name,
            "family": self.spec.family,
            "arch": self.spec.arch,
            "tag": self.spec.tag,
            "label": self.spec.display,
            "weights": self.weights,
            "preprocessing": self.preprocessing.to_dict(),
            "settings": self.settings,
        }


class ModelFamily(Protocol):
    """One model library (timm, open_clip, transformers): how names parse, how weights are
    found, fetched and loaded, and which library versions affect the numbers."""

    prefix: str

    def parse(self, name: str, rest: str) -> ModelSpec:
        """``<prefix>:<rest>`` -> spec; unknown names raise UnknownNameError."""
        ...

    def hub_id(self, spec: ModelSpec) -> str:
        """A human-readable id of the spec's weights (e.g. ``timm/<arch>.<tag>``)."""
        ...

    def load(self, spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
        """Build the model (hub cache, checkpoint or random init)."""
        ...

    def fetch(self, spec: ModelSpec, opts: LoadOptions, log: Callable[[str], None]) -> None:
        """Download (or verify in the cache) everything a later offline load needs."""
        ...

    def versions(self) -> dict[str, str]:
        """Library name -> version, for the run record."""
        ...


@dataclass(frozen=True)
class FamilyRef:
    """A model family by module path; the module (and its library) is imported on first use.
    The module exposes ``FAMILY``, an object of the :class:`ModelFamily` protocol.

    ``syntax`` is how its names are written (``timm:<name>``) and ``about`` what they name,
    for hints and ``--help``, which must not import the library."""

    module: str
    syntax: str
    about: str = ""

    def get(self) -> ModelFamily:
        """The family object (imports its module)."""
        return importlib.import_module(self.module).FAMILY  # type: ignore[no-any-return]


#: prefix -> family; the families register in ``beyond_inet/models/__init__.py``.
FAMILIES: Registry[FamilyRef] = Registry("model family")


PAPER_SUPERVISED_PREPROCESSING = Preprocessing(
    resize_size=256,
    crop_size=224,
    interpolation="bilinear",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    antialias=True,
    source="paper (resize 256 bilinear antialias, center crop 224, ImageNet mean/std)",
)

#: The paper's four models (data).
PAPER_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "deit3_21k",
        "timm",
        "deit3_base_patch16_224",
        "fb_in22k_ft_in1k",
        "ViT-sup",
        PAPER_SUPERVISED_PREPROCESSING,
        "DeiT3-B/16, supervised IN-21k -> IN-1k (timm)",
    ),
    ModelSpec(
        "convnext_base_21k",
        "timm",
        "convnext_base",
        "fb_in22k_ft_in1k",
        "ConvNeXt-sup",
        PAPER_SUPERVISED_PREPROCESSING,
        "ConvNeXt-B, supervised IN-21k -> IN-1k (timm)",
    ),
    ModelSpec(
        "vit_clip",
        "open_clip",
        "ViT-B-16",
        "laion400m_e31",
        "ViT-clip",
        None,
        "OpenCLIP ViT-B/16 on LAION-400M, zero-shot ImageNet head",
    ),
    ModelSpec(
        "convnext_clip",
        "open_clip",
        "convnext_base",
        "laion400m_s13b_b51k",
        "ConvNeXt-clip",
        None,
        "OpenCLIP ConvNeXt-B on LAION-400M, zero-shot ImageNet head",
    ),
)


def choose_preprocessing(
    spec: ModelSpec, weights_pp: Preprocessing, choice: PreprocessingChoice
) -> Preprocessing:
    """The paper's recipe for its models with ``choice='paper'``, else the weights' own."""
    if choice not in ("paper", "weights"):
        raise ValueError(f"preprocessing must be 'paper' or 'weights', got {choice!r}")
    if choice == "paper" and spec.paper_preprocessing is not None:
        return spec.paper_preprocessing
    return weights_pp
