"""The timm family: ``timm:<arch>[.<tag>]`` and the paper's supervised models."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from beyond_inet.models.base import LoadedModel, LoadOptions, ModelSpec, choose_preprocessing
from beyond_inet.models.contract import Classifier
from beyond_inet.models.weights import (
    hf_cached,
    load_checkpoint_into,
    torch_hub_cached,
    unavailable,
)
from beyond_inet.registry import UnknownNameError
from beyond_inet.settings import RANDOM_SEED
from beyond_inet.transforms.preprocess import Preprocessing


def from_timm_config(cfg: dict[str, Any]) -> Preprocessing:
    """Build from a timm data config (``timm.data.resolve_data_config`` output).

    Mirrors timm's eval transform: ``scale_size = floor(img_size / crop_pct)``, center crop.
    """
    crop_mode = cfg.get("crop_mode", "center")
    if crop_mode != "center":
        raise ValueError(f"timm crop_mode {crop_mode!r} is not supported (only 'center')")
    crop = int(cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    return Preprocessing(
        resize_size=math.floor(crop / crop_pct),
        crop_size=crop,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
        source="timm pretrained_cfg (resolve_data_config)",
    )


class TimmClassifier(Classifier):
    """A timm model: trunk = ``forward_features``, head = ``forward_head`` (pooling, norm and
    classifier), pooled = ``forward_head(pre_logits=True)``, taps = ``feature_info``'s modules
    (ViT blocks, ConvNeXt / ResNet stages)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.prefix_tokens = int(getattr(net, "num_prefix_tokens", 0) or 0)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def head(self, t: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(t)

    def pooled(self, t: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(t, pre_logits=True)

    def tap_points(self) -> dict[str, nn.Module]:
        info = getattr(self.net, "feature_info", None) or []
        names = [str(i["module"]) for i in info if isinstance(i, dict) and i.get("module")]
        return {n: self.net.get_submodule(n) for n in names}


def _suggest(name: str, candidates: list[str], kind: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint}"


def full_name(spec: ModelSpec) -> str:
    """``arch.tag`` as timm names the weights."""
    return spec.arch + (f".{spec.tag}" if spec.tag else "")


def create_timm_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with ``dynamic_img_size=True`` where the architecture takes it
    (ViTs: position embeddings resampled per forward, bicubic + antialias as timm's
    ``resample_abs_pos_embed``; identical outputs at the native size), so resolution views
    can run the model at other input sizes. Seeded, so random weights are reproducible."""
    torch.manual_seed(RANDOM_SEED)
    try:
        return timm.create_model(name, dynamic_img_size=True, **kwargs)
    except TypeError as e:  # raised by the constructor, before any weights are read
        if "dynamic_img_size" not in str(e):
            raise
    torch.manual_seed(RANDOM_SEED)
    return timm.create_model(name, **kwargs)


def cached_weights(spec: ModelSpec, must_exist: bool) -> str | None:
    """The cached weights file of a timm spec, or None when not cached.

    With ``must_exist`` and the hub unreachable, raise WeightsUnavailableError at once.
    """
    from huggingface_hub import constants

    from beyond_inet.models.weights import hub_reachable

    cfg = timm.models.get_pretrained_cfg(full_name(spec))
    if cfg is None:
        raise UnknownNameError(f"timm has no pretrained weights for {spec.hub_id!r}.")
    cfgd = cfg.to_dict()
    hit = None
    if cfgd.get("hf_hub_id"):
        hit = hf_cached(cfgd["hf_hub_id"], ("model.safetensors", "pytorch_model.bin"))
    hit = hit or torch_hub_cached(cfgd.get("url", ""))
    if hit is None and must_exist and not hub_reachable():
        looked = [f"{constants.HF_HUB_CACHE} (repo {cfgd.get('hf_hub_id')})"]
        if cfgd.get("url"):
            looked.append(str(Path(torch.hub.get_dir()) / "checkpoints"))
        raise unavailable(spec, looked)
    return hit


class TimmFamily:
    """See :class:`beyond_inet.models.base.ModelFamily`."""

    prefix = "timm"

    def parse(self, name: str, rest: str) -> ModelSpec:
        arch, _, tag = rest.partition(".")
        if not timm.is_model(arch):
            raise UnknownNameError(_suggest(arch, timm.list_models(), "timm model"))
        return ModelSpec(name, "timm", arch, tag or None, description=f"timm {rest}")

    def hub_id(self, spec: ModelSpec) -> str:
        """``timm/<arch>.<tag>``."""
        return f"timm/{full_name(spec)}"

    def load(self, spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
        from timm.data import resolve_data_config

        kind = opts.weights.kind
        if kind == "hub":
            path = cached_weights(spec, must_exist=True)
            overlay = {"file": path} if path else None
            net = create_timm_model(
                full_name(spec), pretrained=True, pretrained_cfg_overlay=overlay
            )
            weights = spec.hub_id
        else:
            net = create_timm_model(full_name(spec), pretrained=False)
            weights = "random"
            if kind == "checkpoint":
                assert opts.weights.checkpoint is not None
                weights = load_checkpoint_into(net, opts.weights.checkpoint, spec.name)
        net.eval()
        weights_pp = from_timm_config(resolve_data_config(model=net))
        pp = choose_preprocessing(spec, weights_pp, opts.preprocessing)
        return LoadedModel(
            spec.name, spec, TimmClassifier(net).eval(), pp, weights, {"head": "supervised"}
        )

    def fetch(self, spec: ModelSpec, opts: LoadOptions, log: Callable[[str], None]) -> None:
        hit = cached_weights(spec, must_exist=True)
        if hit is None:
            log(f"{spec.name}: downloading {spec.hub_id} ...")
        self.load(spec, LoadOptions(preprocessing=opts.preprocessing))  # downloads, verifies
        log(f"{spec.name}: weights ready ({cached_weights(spec, must_exist=False) or 'cached'})")

    def versions(self) -> dict[str, str]:
        return {"timm": timm.__version__}


FAMILY = TimmFamily()
