"""The Hugging Face family: ``hf:<repo id>[@<revision>]``, ``transformers`` image classifiers
(``AutoModelForImageClassification``) with a 1000-class ImageNet head.

Loads are offline: config, weights and image processor come from the Hugging Face cache
(``python -m precompute --fetch-weights --model hf:<repo id>`` fills it). The image
processor's recipe becomes the model's :class:`Preprocessing`
(:func:`from_hf_image_processor`), so preprocessing travels with the weights.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from beyond_inet.models.base import (
    LoadedModel,
    LoadOptions,
    ModelSpec,
    UnsupportedModelError,
    WeightsUnavailableError,
    choose_preprocessing,
)
from beyond_inet.models.contract import Classifier
from beyond_inet.models.weights import (
    fetch_command,
    hf_cached,
    hub_reachable,
    load_checkpoint_into,
    unavailable,
)
from beyond_inet.registry import UnknownNameError
from beyond_inet.settings import RANDOM_SEED
from beyond_inet.transforms.preprocess import Preprocessing

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
#: what every load needs besides the weights: the architecture and the preprocessing
REQUIRED_FILES = (CONFIG_FILE, PROCESSOR_FILE)
#: single-file weights, then sharded ones (an index naming its shards)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
#: what ``--fetch-weights`` downloads besides REQUIRED_FILES: the weights (safetensors when
#: the repo has them, else PyTorch .bin); never TF / Flax / ONNX files
SAFETENSORS_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
BIN_PATTERNS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")

N_IMAGENET_CLASSES = 1000
#: class 0 of ImageNet-1k as Hugging Face configs name it ("tench, Tinca tinca") or by wnid
IMAGENET_FIRST_CLASS = ("tench", "n01440764")

# --------------------------------------------------------------------------- preprocessing

#: PIL resampling codes -> names. Only bilinear and bicubic are expressed: transformers'
#: torchvision backend resamples NEAREST as 'nearest-exact', which ours ('nearest') is not.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _interpolation(resample: Any) -> str:
    """A processor's ``resample`` (PIL code, or torchvision InterpolationMode) -> its name;
    None is the backends' default, bilinear."""
    if resample is None:
        return "bilinear"
    value = getattr(resample, "value", resample)
    return value if isinstance(value, str) else _RESAMPLE.get(int(value), str(value))


def _size(value: Any) -> dict[str, int]:
    """A processor's ``size`` / ``crop_size`` (dict, SizeDict or int) -> its set keys."""
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    items = value.items() if hasattr(value, "items") else vars(value).items()
    return {k: int(v) for k, v in items if v is not None}


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    vals = [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
    if len(vals) != 3:
        raise ValueError(f"image_{what} has {len(vals)} values; RGB needs 3")
    return (vals[0], vals[1], vals[2])


def _uses_backend(proc: Any, method: str) -> bool:
    """True when ``proc``'s ``method`` is its transformers backend's own (not overridden)."""
    from transformers.image_processing_backends import PilBackend, TorchvisionBackend

    own = getattr(type(proc), method, None)
    return any(own is getattr(b, method) for b in (TorchvisionBackend, PilBackend))


def from_hf_image_processor(proc: Any) -> Preprocessing:
    """Our :class:`Preprocessing` from a transformers image processor
    (``AutoImageProcessor``): its resize, center crop, rescale and normalisation.

    * ``size={'shortest_edge': s}``: resize the shorter side to ``s``, then center-crop
      ``crop_size`` (``do_center_crop`` must be set: without a crop the output is not square);
    * ``size={'height': h, 'width': h}``: resize the whole image to ``h`` x ``h``
      (``resize_mode='exact'``; a center crop to a smaller size cannot be expressed);
    * ConvNeXt processors (``crop_pct``): for ``shortest_edge < 384`` resize the shorter side
      to ``int(shortest_edge / crop_pct)`` and center-crop ``shortest_edge``, else resize to
      ``shortest_edge`` x ``shortest_edge`` without a crop, as ``ConvNextImageProcessor``;
    * ``resample``: bilinear or bicubic, antialiased (transformers' default);
    * ``do_rescale`` (``rescale_factor`` 1/255) and ``do_normalize`` (``image_mean`` /
      ``image_std``; mean 0 / std 1 without it).

    Known difference: transformers floors the crop offset, torchvision (ours) rounds it half to
    even, so where ``(resized - crop) % 4 == 3`` along an axis our crop window sits one pixel
    further along that axis. Anything else raises ``ValueError`` saying what cannot be
    expressed.
    """
    name = type(proc).__name__
    convnext = name.startswith("ConvNextImageProcessor")

    def refuse(why: str) -> ValueError:
        return ValueError(f"its image processor ({name}) {why}; this cannot be expressed")

    if not (convnext or _uses_backend(proc, "resize")):
        raise refuse("resizes in a way of its own")
    if not _uses_backend(proc, "center_crop"):
        raise refuse("crops in a way of its own")
    if getattr(proc, "do_resize", True) is False:
        raise refuse("does not resize (images of any size)")
    if getattr(proc, "do_pad", None):
        raise refuse("pads images")
    interpolation = _interpolation(getattr(proc, "resample", None))
    if interpolation not in ("bilinear", "bicubic"):
        raise refuse(f"resamples with {interpolation!r}")
    size = _size(getattr(proc, "size", None))
    do_crop = bool(getattr(proc, "do_center_crop", False))
    crop = _size(getattr(proc, "crop_size", None)) if do_crop else {}
    if crop and crop.get("height") != crop.get("width"):
        raise refuse(f"crops a non-square {crop}")
    crop_side = crop.get("height")
    edge = size.get("shortest_edge")
    after: int | None = None  # the square side after a whole-image resize (a crop may follow)
    exact = False  # resize the whole image to out x out
    if convnext:
        if set(size) != {"shortest_edge"} or edge is None:
            raise refuse(f"has size {size}")
        crop_pct = getattr(proc, "crop_pct", None)
        if edge >= 384:  # ConvNextImageProcessor warps, no crop
            resize = out = after = edge
            exact, how = True, f"resize to {edge}x{edge}"
        elif crop_pct is None:
            raise refuse("has no crop_pct")
        else:  # its resize ends with a center crop to shortest_edge
            resize, out = int(edge / float(crop_pct)), edge
            after = out
            how = f"shortest edge {resize} (crop_pct {float(crop_pct):g}), center crop {out}"
    elif set(size) == {"shortest_edge"} and edge is not None:
        if getattr(proc, "crop_pct", None) is not None:
            raise refuse("has a crop_pct of its own")
        if crop_side is None:
            raise refuse("resizes the shortest edge without a center crop (not square)")
        resize, out = edge, crop_side
        how = f"shortest edge {edge}, center crop {out}"
    elif set(size) == {"height", "width"}:
        if size["height"] != size["width"]:
            raise refuse(f"resizes to a non-square {size['height']}x{size['width']}")
        resize = out = after = size["height"]
        exact, how = True, f"resize to {out}x{out}"
    else:
        raise refuse(f"has size {size}")
    if after is not None and crop_side is not None and crop_side != after:
        raise refuse(f"crops {crop_side} after resizing to {after}")
    if getattr(proc, "do_rescale", True):
        factor = float(getattr(proc, "rescale_factor", 1 / 255))
        if abs(factor * 255 - 1) > 1e-6:
            raise refuse(f"rescales by {factor:g}, not 1/255")
    else:
        raise refuse("does not rescale to 0..1")
    if getattr(proc, "do_normalize", True):
        mean = _triple(getattr(proc, "image_mean", None), "mean")
        std = _triple(getattr(proc, "image_std", None), "std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocessing(
        resize_size=resize,
        crop_size=out,
        interpolation=interpolation,
        mean=mean,
        std=std,
        antialias=True,
        source=f"Hugging Face image processor ({name}: {how})",
        resize_mode="exact" if exact else "shorter",
    )


# --------------------------------------------------------------------------- the classifier


def _tap_list(base: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The shallowest ``ModuleList`` of layers / stages in a base model (ViT ``layers``,
    ``encoder.layer``, ConvNeXt ``encoder.stages``, Swin ``encoder.layers``), or None."""
    found = [
        (name.count("."), name, m)
        for name, m in base.named_modules()
        if isinstance(m, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "stages")
    ]
    if not found:
        return None
    _, name, m = min(found, key=lambda f: f[0])
    return name, m  # type: ignore[return-value]


class HfClassifier(Classifier):
    """A transformers ``*ForImageClassification``: trunk = its base model
    (``model.base_model``) -> the pooled output (``pooler_output``: ConvNeXt, Swin, BEiT,
    ResNet) or the token sequence (ViT, DeiT: the classifier reads the first token);
    head = ``model.classifier``; pooled = the classifier's input; taps = the base model's
    layers / stages. ``reads`` ('pooler' / 'cls') is found and checked by
    :func:`classifier_for`."""

    def __init__(self, model: nn.Module, reads: str) -> None:
        super().__init__()
        if reads not in ("pooler", "cls"):
            raise ValueError(f"reads must be 'pooler' or 'cls', got {reads!r}")
        self.model = model
        self.reads = reads
        base = model.base_model
        emb = getattr(base, "embeddings", None)
        prefix = sum(
            isinstance(getattr(emb, a, None), torch.Tensor)
            for a in ("cls_token", "distillation_token")
        )
        registers = getattr(emb, "register_tokens", None)
        if isinstance(registers, torch.Tensor):
            prefix += int(registers.shape[1])
        self.prefix_tokens = int(prefix)
        size = getattr(model.config, "image_size", None)
        self._native = (size, size) if isinstance(size, int) else tuple(size or ())
        self._resamples = "interpolate_pos_encoding" in inspect.signature(base.forward).parameters

    def resize_kwargs(self, x: torch.Tensor) -> dict[str, Any]:
        """``interpolate_pos_encoding=True`` for a position-embedding model at another input
        size than its config's (resolution views), as transformers resamples them."""
        if self._resamples and tuple(x.shape[-2:]) != self._native:
            return {"interpolate_pos_encoding": True}
        return {}

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.base_model(x, **self.resize_kwargs(x))
        return out.pooler_output if self.reads == "pooler" else out.last_hidden_state

    def _classifier_input(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, 0] if self.reads == "cls" else t

    def head(self, t: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(self._classifier_input(t))

    def pooled(self, t: torch.Tensor) -> torch.Tensor:
        return self._classifier_input(t).flatten(1)

    def tap_points(self) -> dict[str, nn.Module]:
        found = _tap_list(self.model.base_model)
        if found is None:
            return {}
        name, layers = found
        return {f"{name}.{i}": m for i, m in enumerate(layers)}


def classifier_for(model: nn.Module, size: int, name: str) -> HfClassifier:
    """Wrap ``model`` (eval mode): find whether its classifier reads the base model's
    pooled output or its first token, and check on a seeded random batch that
    ``head(trunk(x))`` equals the model's own logits; other heads (e.g. DINOv2's CLS +
    mean-patch concatenation, DeiT's teacher average) raise UnsupportedModelError."""
    kind = type(model).__name__
    if not isinstance(getattr(model, "classifier", None), nn.Module):
        raise UnsupportedModelError(
            f"{name!r} ({kind}) has no `classifier` head; hf models are supported when their "
            "classifier reads the base model's pooled output or first token (ViT, DeiT, BEiT, "
            "ConvNeXt, Swin, ResNet, ...)."
        )
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(RANDOM_SEED))
    module = HfClassifier(model, "cls").eval()
    kwargs = module.resize_kwargs(x)
    with torch.no_grad():
        ref = model(pixel_values=x, **kwargs).logits
        out = model.base_model(x, **kwargs)
        if getattr(out, "pooler_output", None) is not None:
            module.reads = "pooler"
        got = module.head(module.trunk(x))
    if got.shape != ref.shape or not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
        raise UnsupportedModelError(
            f"{name!r} ({kind}): its classifier does not read the base model's pooled output "
            "or first token as supported hf models do (ViT, DeiT, BEiT, ConvNeXt, Swin, "
            "ResNet, ...); it cannot be evaluated here."
        )
    return module


# --------------------------------------------------------------------------- the family


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _cached(spec: ModelSpec, filename: str) -> str | None:
    return hf_cached(spec.arch, (filename,), revision=spec.tag)


def cached_weights(spec: ModelSpec) -> str | None:
    """The cached weights file (or shard index, with every shard cached) of a spec."""
    hit = hf_cached(spec.arch, WEIGHT_FILES, revision=spec.tag)
    if hit:
        return hit
    for index in WEIGHT_INDEXES:
        path = _cached(spec, index)
        if path:
            shards = set(json.loads(Path(path).read_text()).get("weight_map", {}).values())
            if all(_cached(spec, s) for s in shards):
                return path
    return None


@contextlib.contextmanager
def _no_loading_bar() -> Iterator[None]:
    """Without transformers' "Loading weights" progress bar (a load from the local cache;
    download bars of ``--fetch-weights`` are left alone)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _commit(path: str) -> str | None:
    """The commit of a cached file (``.../snapshots/<commit>/<file>``)."""
    p = Path(path)
    return p.parent.name if p.parent.parent.name == "snapshots" else None


def check_imagenet_head(config: Any, name: str) -> None:
    """Refuse a config whose head is not 1000 ImageNet-1k classes in ImageNet order (by its
    size, and by class 0 where the config names its classes)."""
    labels = dict(getattr(config, "id2label", None) or {})
    n = int(getattr(config, "num_labels", len(labels)) or len(labels))
    if n != N_IMAGENET_CLASSES:
        raise UnsupportedModelError(
            f"{name!r} has a {n}-class head, not the 1000 ImageNet-1k classes evaluation needs "
            "(an ImageNet-21k or other-task head); pick its ImageNet-1k fine-tuned repo."
        )
    first = str(labels.get(0, labels.get("0", ""))).lower()
    if first and not first.startswith("label_") and not first.startswith(IMAGENET_FIRST_CLASS):
        raise UnsupportedModelError(
            f"{name!r} names its class 0 {first!r}, not ImageNet-1k's 'tench': its 1000 "
            "classes are not in ImageNet order."
        )


class HfFamily:
    """See :class:`beyond_inet.models.base.ModelFamily`."""

    prefix = "hf"

    def parse(self, name: str, rest: str) -> ModelSpec:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        repo, _, revision = rest.partition("@")
        try:
            validate_repo_id(repo)
        except HFValidationError:
            raise UnknownNameError(
                f"{name!r} is not a Hugging Face model name: write 'hf:<org>/<name>' or "
                "'hf:<org>/<name>@<revision>' (e.g. 'hf:google/vit-base-patch16-224')."
            ) from None
        if "@" in rest and not revision:
            raise UnknownNameError(f"{name!r} has an empty revision after '@'.")
        return ModelSpec(name, "hf", repo, revision or None, description=f"transformers {repo}")

    def hub_id(self, spec: ModelSpec) -> str:
        """``<repo id>[@<revision>]``."""
        return spec.arch + (f"@{spec.tag}" if spec.tag else "")

    def _missing(self, spec: ModelSpec, what: str) -> WeightsUnavailableError:
        """Config / processor / weights not cached: the fast error saying what to run."""
        looked = [f"{_cache_dir()} (repo {spec.arch}, revision {spec.tag or 'main'})"]
        if not hub_reachable():
            return unavailable(spec, looked)
        other = (
            ", or pass --checkpoint PATH / --random-weights (the config and image processor "
            "are cached)"
            if what == "weights"
            else " (--checkpoint and --random-weights need it too)"
        )
        return WeightsUnavailableError(
            f"The {what} of model {spec.name!r} ({spec.hub_id}) is not in the local Hugging "
            f"Face cache ({looked[0]}); hf models load offline only. Run "
            f"`{fetch_command(spec.name)}` first{other}."
        )

    def _config(self, spec: ModelSpec) -> Any:
        from transformers import AutoConfig

        path = _cached(spec, CONFIG_FILE)
        if path is None:
            raise self._missing(spec, "config")
        config = AutoConfig.from_pretrained(
            spec.arch, revision=spec.tag, local_files_only=True, cache_dir=_cache_dir()
        )
        check_imagenet_head(config, spec.name)
        return config

    def _preprocessing(self, spec: ModelSpec) -> Preprocessing:
        from transformers import AutoImageProcessor

        if _cached(spec, PROCESSOR_FILE) is None:
            raise self._missing(spec, "image processor (preprocessor_config.json)")
        proc = AutoImageProcessor.from_pretrained(
            spec.arch, revision=spec.tag, local_files_only=True, cache_dir=_cache_dir()
        )
        try:
            return from_hf_image_processor(proc)
        except ValueError as e:
            raise UnsupportedModelError(f"{spec.name!r}: {e}.") from None

    def load(self, spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
        from transformers import AutoModelForImageClassification

        config = self._config(spec)
        weights_pp = self._preprocessing(spec)
        kind = opts.weights.kind
        if kind == "hub":
            path = cached_weights(spec)
            if path is None:
                raise self._missing(spec, "weights")
            with _no_loading_bar():
                model = AutoModelForImageClassification.from_pretrained(
                    spec.arch,
                    revision=spec.tag,
                    local_files_only=True,
                    cache_dir=_cache_dir(),
                    config=config,
                    dtype=torch.float32,
                )
            commit = _commit(path)
            weights = spec.arch + (f"@{commit}" if commit else "")
        else:
            torch.manual_seed(RANDOM_SEED)
            model = AutoModelForImageClassification.from_config(config, dtype=torch.float32)
            weights = "random"
            if kind == "checkpoint":
                assert opts.weights.checkpoint is not None
                weights = load_checkpoint_into(model, opts.weights.checkpoint, spec.name)
        model.eval()
        module = classifier_for(model, weights_pp.crop_size, spec.name)
        pp = choose_preprocessing(spec, weights_pp, opts.preprocessing)
        settings = {"head": "supervised", "architecture": type(model).__name__}
        return LoadedModel(spec.name, spec, module, pp, weights, settings)

    def fetch(self, spec: ModelSpec, opts: LoadOptions, log: Callable[[str], None]) -> None:
        from huggingface_hub import list_repo_files, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        if not (all(_cached(spec, f) for f in REQUIRED_FILES) and cached_weights(spec)):
            if not hub_reachable():
                raise self._missing(spec, "weights")
            log(f"{spec.name}: downloading {spec.hub_id} ...")
            try:
                remote = list_repo_files(spec.arch, revision=spec.tag)
                lacking = [f for f in REQUIRED_FILES if f not in remote]
                if lacking:
                    raise UnsupportedModelError(
                        f"{spec.name!r}: the repo has no {' / '.join(lacking)}, which an "
                        "hf model needs (its architecture / its preprocessing)."
                    )
                has_st = any(f.endswith(".safetensors") for f in remote)
                patterns = [*REQUIRED_FILES, *(SAFETENSORS_PATTERNS if has_st else BIN_PATTERNS)]
                where = snapshot_download(
                    spec.arch, revision=spec.tag, allow_patterns=patterns, cache_dir=_cache_dir()
                )
            except (RepositoryNotFoundError, RevisionNotFoundError) as e:
                raise UnknownNameError(
                    f"{spec.name!r}: the hub has no such model repo or revision "
                    f"({type(e).__name__}; gated and private repos need `hf auth login`)."
                ) from None
            got = sorted(p.name for p in Path(str(where)).iterdir())
            log(f"{spec.name}: fetched {', '.join(got)} into {where}")
        self.load(spec, LoadOptions(preprocessing=opts.preprocessing))  # verifies, offline
        log(f"{spec.name}: weights ready ({cached_weights(spec)})")

    def versions(self) -> dict[str, str]:
        return {"transformers": transformers.__version__}


FAMILY = HfFamily()
