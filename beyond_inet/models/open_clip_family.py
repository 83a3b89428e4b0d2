"""The open_clip family: ``open_clip:<arch>:<tag>`` as zero-shot ImageNet classifiers.

The zero-shot head is open_clip's recipe (its ImageNet class names, the 80 OpenAI templates,
mean of unit-norm template embeddings) built once per (arch, weights, templates) and cached
on disk; ``logits = logit_scale * cos(image, class text)`` with an explicit logit scale.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from torch import nn

from beyond_inet.models.base import LoadedModel, LoadOptions, ModelSpec, choose_preprocessing
from beyond_inet.models.contract import Classifier
from beyond_inet.models.weights import hf_cached, hub_reachable, load_checkpoint_into, unavailable
from beyond_inet.reference import openai_templates
from beyond_inet.registry import UnknownNameError
from beyond_inet.settings import RANDOM_SEED, cache_dir
from beyond_inet.transforms.preprocess import Preprocessing

OPEN_CLIP_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
OPEN_CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def from_open_clip_config(cfg: dict[str, Any]) -> Preprocessing:
    """Build from ``open_clip.get_model_preprocess_cfg`` output (resize_mode 'shortest')."""
    mode = cfg.get("resize_mode", "shortest")
    if mode != "shortest":
        raise ValueError(f"open_clip resize_mode {mode!r} is not supported (only 'shortest')")
    size = cfg["size"]
    size = int(size if isinstance(size, int) else size[-1])
    return Preprocessing(
        resize_size=size,
        crop_size=size,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
        source="open_clip preprocess config",
    )


def register_bundled_configs() -> None:
    """Make the bundled tiny open_clip configs (``test-tiny-clip``) known to open_clip."""
    path = Path(str(files("beyond_inet.resources") / "open_clip_configs"))
    if path.is_dir() and "test-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(path)


def resampled_pos_embed(visual: nn.Module, height: int, width: int) -> torch.Tensor | None:
    """An open_clip ViT tower's position embedding for a ``height x width`` input, or
    ``None`` when the tower needs no change (native grid, or not an open_clip ViT).

    Same resampling as open_clip's ``resize_pos_embed`` (used by ``force_image_size``, as
    the paper ran its resolution sweep): class token kept, grid bicubic with antialias.
    """
    from open_clip.model import resize_pos_embed

    pos = getattr(visual, "positional_embedding", None)
    patch = getattr(visual, "patch_size", None)
    if not isinstance(pos, torch.Tensor) or pos.ndim != 2 or patch is None:
        return None
    grid = (height // patch[0], width // patch[1])
    if tuple(visual.grid_size) == grid:
        return None
    state = {"visual.positional_embedding": pos}
    resize_pos_embed(state, SimpleNamespace(visual=SimpleNamespace(grid_size=grid)))
    return state["visual.positional_embedding"]


class ZeroShotClassifier(Classifier):
    """CLIP image tower + fixed text head: trunk = ``encode_image`` (any input size a ViT
    tower's patch grid allows), head = ``logit_scale * norm(f) @ text_head``."""

    def __init__(
        self, clip: nn.Module, head: torch.Tensor, logit_scale: float, tokenizer_name: str
    ) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("text_head", head)
        self.logit_scale = float(logit_scale)
        self.tokenizer_name = tokenizer_name
        self.prefix_tokens = 1 if hasattr(clip.visual, "class_embedding") else 0

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        pos = resampled_pos_embed(self.clip.visual, x.shape[-2], x.shape[-1])
        if pos is None:
            return self.clip.encode_image(x)
        return torch.func.functional_call(self.clip.visual, {"positional_embedding": pos}, (x,))

    def head(self, t: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * embed_norm(t) @ self.text_head.float()

    def pooled(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def embedding(self, t: torch.Tensor) -> torch.Tensor | None:
        return embed_norm(t)

    def tap_points(self) -> dict[str, nn.Module]:
        visual = self.clip.visual
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is not None:
            return {f"transformer.resblocks.{i}": b for i, b in enumerate(blocks)}
        info = getattr(getattr(visual, "trunk", None), "feature_info", None) or []
        names = [str(i["module"]) for i in info if isinstance(i, dict) and i.get("module")]
        return {f"trunk.{n}": visual.trunk.get_submodule(n) for n in names}

    def pool_tap(self, name: str, out: torch.Tensor, tokens: str = "mean") -> torch.Tensor:
        if isinstance(out, tuple | list):
            out = out[0]
        transformer = getattr(self.clip.visual, "transformer", None)
        if out.ndim == 3 and not getattr(transformer, "batch_first", True):
            out = out.transpose(0, 1)  # [T, B, C] -> [B, T, C]
        return super().pool_tap(name, out, tokens)

    def text_head_for(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """A [D, len(labels)] zero-shot head for other labels (same recipe)."""
        from open_clip.zero_shot_classifier import build_zero_shot_classifier

        return (
            build_zero_shot_classifier(
                self.clip,
                open_clip.get_tokenizer(self.tokenizer_name),
                list(labels),
                list(templates),
                num_classes_per_batch=10,
                device=self.text_head.device,
            )
            .float()
            .cpu()
        )


def embed_norm(t: torch.Tensor) -> torch.Tensor:
    """Unit-norm fp32 image embeddings."""
    return torch.nn.functional.normalize(t.float(), dim=-1)


def head_cache_path(spec: ModelSpec, weights: str, directory: Path) -> Path:
    """Where the ImageNet zero-shot head of (arch, weights, templates, class names) lives."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    key_src = json.dumps(
        {
            "arch": spec.arch,
            "weights": weights,
            "templates": list(openai_templates()),
            "classnames": list(IMAGENET_CLASSNAMES),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    safe_arch = spec.arch.replace("/", "_")
    return directory / "zeroshot_heads" / f"{safe_arch}-{spec.tag}-{key}.pt"


def zero_shot_head(
    clip: nn.Module, spec: ModelSpec, weights: str, directory: Path
) -> tuple[torch.Tensor, str]:
    """The [D, 1000] text head, read from or written to the on-disk cache (atomically)."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    path = head_cache_path(spec, weights, directory)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True), str(path)
    device = next(clip.parameters()).device
    with torch.no_grad():
        head = (
            build_zero_shot_classifier(
                clip,
                open_clip.get_tokenizer(spec.arch),
                IMAGENET_CLASSNAMES,
                OPENAI_IMAGENET_TEMPLATES,
                num_classes_per_batch=10,
                device=device,
                use_tqdm=True,
            )
            .float()
            .cpu()
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(head, tmp)
    tmp.replace(path)
    return head, str(path)


def random_head(dim: int, n_classes: int = 1000) -> torch.Tensor:
    """A seeded random unit-norm [dim, n_classes] head for ``--random-weights`` runs."""
    g = torch.Generator().manual_seed(RANDOM_SEED)
    return torch.nn.functional.normalize(torch.randn(dim, n_classes, generator=g), dim=0)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Drop open_clip's root-logger warning about random init (we say it ourselves)."""
    root = logging.getLogger()
    f = _DropMessage("No pretrained weights loaded")
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


class OpenClipFamily:
    """See :class:`beyond_inet.models.base.ModelFamily`."""

    prefix = "open_clip"

    def parse(self, name: str, rest: str) -> ModelSpec:
        register_bundled_configs()
        arch, _, tag = rest.partition(":")
        if arch not in open_clip.list_models():
            close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(f"Unknown open_clip arch {arch!r}.{hint}")
        return ModelSpec(name, "open_clip", arch, tag or None, description=f"open_clip {rest}")

    def hub_id(self, spec: ModelSpec) -> str:
        """``open_clip/<arch>/<tag>``."""
        return f"open_clip/{spec.arch}/{spec.tag}"

    def cached_weights(self, spec: ModelSpec, must_exist: bool) -> str | None:
        """The cached weights file of a spec, or None (raises when it must exist but cannot
        be downloaded)."""
        from huggingface_hub import constants

        if not spec.tag:
            tags = open_clip.list_pretrained_tags_by_model(spec.arch)
            raise UnknownNameError(
                f"{spec.name!r} needs a pretrained tag: 'open_clip:{spec.arch}:<tag>' with one "
                f"of: {', '.join(tags) or '-'} (or use --checkpoint / --random-weights)."
            )
        cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(spec.arch)
            close = difflib.get_close_matches(spec.tag, tags, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"Unknown pretrained tag for {spec.arch} {spec.tag!r}.{hint} Name it "
                f"'open_clip:{spec.arch}:<tag>' with a tag from: {', '.join(tags) or '-'}"
                " (or use --checkpoint / --random-weights)."
            )
        hit = None
        if cfg.get("hf_hub"):
            repo, fname = os.path.split(cfg["hf_hub"])  # 'org/name/' -> default file names
            hit = hf_cached(repo, (fname,) if fname else OPEN_CLIP_HF_FILES)
        url = cfg.get("url", "")
        if hit is None and url:
            p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
            hit = str(p) if p.is_file() else None
        if hit is None and must_exist and not hub_reachable():
            looked = [f"{constants.HF_HUB_CACHE} (repo {cfg.get('hf_hub')})", "~/.cache/clip"]
            raise unavailable(spec, looked)
        return hit

    def _clip(self, spec: ModelSpec, opts: LoadOptions) -> tuple[nn.Module, str]:
        kind = opts.weights.kind
        if kind == "hub":
            path = self.cached_weights(spec, must_exist=True)
            # A cached file loads like a checkpoint: carry the tag's own preprocessing and
            # activation settings over explicitly so they still travel with the weights.
            tag_cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag or "")
            clip = open_clip.create_model(
                spec.arch,
                pretrained=path or spec.tag,
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                force_preprocess_cfg={
                    k: tag_cfg[k] for k in OPEN_CLIP_PREPROCESS_KEYS if k in tag_cfg
                }
                or None,
            )
            return clip.eval(), spec.hub_id
        register_bundled_configs()
        torch.manual_seed(RANDOM_SEED)
        with _quiet_random_init():
            clip = open_clip.create_model(spec.arch, pretrained=None)
        weights = "random"
        if kind == "checkpoint":
            assert opts.weights.checkpoint is not None
            weights = load_checkpoint_into(clip, opts.weights.checkpoint, spec.name)
        return clip.eval(), weights

    def load(self, spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
        clip, weights = self._clip(spec, opts)
        settings: dict[str, Any] = {
            "head": "zero-shot",
            "classnames": "open_clip IMAGENET_CLASSNAMES",
            "templates": "open_clip OPENAI_IMAGENET_TEMPLATES (80)",
            "logit_scale": float(opts.logit_scale),
        }
        if weights == "random":
            dim = int(getattr(clip, "embed_dim", 0) or clip.text_projection.shape[-1])
            head = random_head(dim)
            settings["templates"] = "none (random head)"
        else:
            head, settings["head_cache"] = zero_shot_head(
                clip, spec, weights, opts.cache_dir or cache_dir()
            )
        module = ZeroShotClassifier(clip, head, opts.logit_scale, spec.arch).eval()
        weights_pp = from_open_clip_config(open_clip.get_model_preprocess_cfg(clip))
        pp = choose_preprocessing(spec, weights_pp, opts.preprocessing)
        return LoadedModel(spec.name, spec, module, pp, weights, settings)

    def fetch(self, spec: ModelSpec, opts: LoadOptions, log: Callable[[str], None]) -> None:
        if self.cached_weights(spec, must_exist=True) is None:
            log(f"{spec.name}: downloading {spec.hub_id} ...")
        clip, weights = self._clip(spec, LoadOptions())
        directory = opts.cache_dir or cache_dir()
        had = head_cache_path(spec, weights, directory).is_file()
        if not had:
            log(
                f"{spec.name}: building the zero-shot ImageNet head (1000 classes x 80 "
                "templates, once) ..."
            )
        _, where = zero_shot_head(clip, spec, weights, directory)
        log(
            f"{spec.name}: weights ready ({self.cached_weights(spec, must_exist=False)}); "
            f"zero-shot head {'cached' if had else 'written'} at {where}"
        )

    def versions(self) -> dict[str, str]:
        return {"open_clip": open_clip.__version__}


FAMILY = OpenClipFamily()
