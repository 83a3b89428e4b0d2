"""Model zoo: specs, a registry, and loaders that wrap every model to one interface.

Every loaded model is a :class:`LoadedModel`: a module taking a normalised float batch
``[B, 3, H, W]`` and returning 1000-way ImageNet logits, plus the :class:`Preprocessing` it
is evaluated with and a record of where its weights came from.

Names: the built-in paper models (``deit3_21k``, ``convnext_base_21k``, ``vit_clip``,
``convnext_clip``), ``timm:<timm model name>`` and ``open_clip:<arch>:<pretrained tag>``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from beyond_inet.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    from_open_clip_config,
    from_timm_config,
)
from beyond_inet.registry import Registry, UnknownNameError

Family = Literal["timm", "open_clip"]
PreprocessingChoice = Literal["paper", "weights"]

#: The logit scale the paper applies to CLIP cosine similarities (CLIP's own, exp(4.6052)).
DEFAULT_LOGIT_SCALE = 100.0
RANDOM_SEED = 0


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (the message says what to do)."""


class CheckpointMismatchError(RuntimeError):
    """A ``--checkpoint`` file does not fit the model architecture."""


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a timm model or an open_clip arch + tag, with display metadata.

    ``paper_preprocessing`` is the paper's own evaluation recipe where it differs from the
    weights' config; ``None`` means the weights' config is what the paper used.
    """

    name: str
    family: Family
    arch: str
    tag: str | None = None
    label: str = ""
    paper_preprocessing: Preprocessing | None = None
    description: str = ""

    @property
    def hub_id(self) -> str:
        """A human-readable weights id: ``timm/<arch>.<tag>`` or ``open_clip/<arch>/<tag>``."""
        if self.family == "timm":
            return f"timm/{self.arch}" + (f".{self.tag}" if self.tag else "")
        return f"open_clip/{self.arch}/{self.tag}"

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


@dataclass
class LoadedModel:
    """A model ready for evaluation: ``module(normalised batch) -> [B, 1000] logits``."""

    name: str
    spec: ModelSpec
    module: nn.Module
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


PAPER_SUPERVISED_PREPROCESSING = Preprocessing(
    resize_size=256,
    crop_size=224,
    interpolation="bilinear",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    antialias=True,
    source="paper (resize 256 bilinear antialias, center crop 224, ImageNet mean/std)",
)

MODELS: Registry[ModelSpec] = Registry("model")
for _spec in (
    ModelSpec(
        "deit3_21k", "timm", "deit3_base_patch16_224", "fb_in22k_ft_in1k", "ViT-sup",
        PAPER_SUPERVISED_PREPROCESSING, "DeiT3-B/16, supervised IN-21k -> IN-1k (timm)",
    ),
    ModelSpec(
        "convnext_base_21k", "timm", "convnext_base", "fb_in22k_ft_in1k", "ConvNeXt-sup",
        PAPER_SUPERVISED_PREPROCESSING, "ConvNeXt-B, supervised IN-21k -> IN-1k (timm)",
    ),
    ModelSpec(
        "vit_clip", "open_clip", "ViT-B-16", "laion400m_e31", "ViT-clip", None,
        "OpenCLIP ViT-B/16 on LAION-400M, zero-shot ImageNet head",
    ),
    ModelSpec(
        "convnext_clip", "open_clip", "convnext_base", "laion400m_s13b_b51k", "ConvNeXt-clip",
        None, "OpenCLIP ConvNeXt-B on LAION-400M, zero-shot ImageNet head",
    ),
):
    MODELS.add(_spec.name, _spec)

PAPER_MODELS: tuple[str, ...] = tuple(MODELS)


def expand_model_names(names: list[str]) -> list[str]:
    """Expand ``all`` to the paper's four models; keep order, drop duplicates."""
    out: list[str] = []
    for n in names:
        for m in PAPER_MODELS if n == "all" else (n,):
            if m not in out:
                out.append(m)
    return out


def _suggest(name: str, candidates: list[str], kind: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint}"


def _timm_spec(name: str, timm_name: str) -> ModelSpec:
    import timm

    arch, _, tag = timm_name.partition(".")
    if not timm.is_model(arch):
        raise UnknownNameError(_suggest(arch, timm.list_models(), "timm model"))
    return ModelSpec(name, "timm", arch, tag or None, description=f"timm {timm_name}")


def _open_clip_spec(name: str, rest: str) -> ModelSpec:
    import open_clip

    register_bundled_open_clip_configs()
    arch, _, tag = rest.partition(":")
    if arch not in open_clip.list_models():
        raise UnknownNameError(_suggest(arch, open_clip.list_models(), "open_clip arch"))
    return ModelSpec(name, "open_clip", arch, tag or None, description=f"open_clip {rest}")


def resolve_spec(name: str) -> ModelSpec:
    """Name -> ModelSpec; unknown names raise :class:`UnknownNameError` with suggestions."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix == "timm":
        return _timm_spec(name, rest)
    if sep and prefix == "open_clip":
        return _open_clip_spec(name, rest)
    if name not in MODELS:
        raise UnknownNameError(
            MODELS.unknown_message(name)
            + " Any timm model as 'timm:<name>', any open_clip model as"
            " 'open_clip:<arch>:<tag>'."
        )
    return MODELS.get(name)


# --------------------------------------------------------------------------------------
# Weights: cache lookup, fast offline failure, checkpoint files
# --------------------------------------------------------------------------------------


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face endpoint accepts a TCP connection within ``timeout`` s.

    Honours ``HF_HUB_OFFLINE``. Used so that missing weights fail in seconds, not minutes.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    parsed = urlparse(constants.ENDPOINT)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_cached(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for fn in filenames:
        hit = try_to_load_from_cache(repo_id, fn)
        if isinstance(hit, str):
            return hit
    return None


def _torch_hub_cached(url: str) -> str | None:
    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return str(path) if path.is_file() else None


def _weights_help(spec: ModelSpec, looked: list[str]) -> str:
    from huggingface_hub import constants

    where = "; ".join(looked)
    return (
        f"Pretrained weights for model {spec.name!r} ({spec.hub_id}) are not in the local cache "
        f"and the hub ({constants.ENDPOINT}) cannot be reached. Looked in: {where}. "
        "To fix: on a machine with internet run `python -m precompute --model "
        f"{spec.name} --limit 1` (or load the model once with timm/open_clip) and copy its "
        "Hugging Face cache here (set HF_HOME to point at it); or pass --checkpoint PATH to a "
        "local safetensors/state-dict file; or use --random-weights for a smoke test "
        "(meaningless numbers)."
    )


def _resolve_timm_file(spec: ModelSpec) -> str | None:
    """Cached weights file for a timm spec, or None when not cached."""
    import timm
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(spec.arch + (f".{spec.tag}" if spec.tag else ""))
    if cfg is None:
        raise UnknownNameError(f"timm has no pretrained weights for {spec.hub_id!r}.")
    cfgd = cfg.to_dict()
    hit = None
    if cfgd.get("hf_hub_id"):
        hit = _hf_cached(cfgd["hf_hub_id"], ("model.safetensors", "pytorch_model.bin"))
    hit = hit or _torch_hub_cached(cfgd.get("url", ""))
    if hit is None and not hub_reachable():
        looked = [f"{constants.HF_HUB_CACHE} (repo {cfgd.get('hf_hub_id')})"]
        if cfgd.get("url"):
            looked.append(str(Path(torch.hub.get_dir()) / "checkpoints"))
        raise WeightsUnavailableError(_weights_help(spec, looked))
    return hit


OPEN_CLIP_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
OPEN_CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _resolve_open_clip_file(spec: ModelSpec) -> str | None:
    """Cached weights file for an open_clip spec, or None when downloadable."""
    import open_clip
    from huggingface_hub import constants

    if not spec.tag:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        raise UnknownNameError(
            f"{spec.name!r} needs a pretrained tag: 'open_clip:{spec.arch}:<tag>' with one of: "
            f"{', '.join(tags) or '-'} (or use --checkpoint / --random-weights)."
        )
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        raise UnknownNameError(
            _suggest(spec.tag or "", tags, f"pretrained tag for {spec.arch}")
            + f" Name it 'open_clip:{spec.arch}:<tag>' with a tag from: {', '.join(tags) or '-'}"
            " (or use --checkpoint / --random-weights)."
        )
    hit = None
    if cfg.get("hf_hub"):
        repo, fname = os.path.split(cfg["hf_hub"])  # 'org/name/' -> default file names
        names = (fname,) if fname else OPEN_CLIP_HF_FILES
        hit = _hf_cached(repo, names)
    url = cfg.get("url", "")
    if hit is None and url:
        p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
        hit = str(p) if p.is_file() else None
    if hit is None and not hub_reachable():
        looked = [f"{constants.HF_HUB_CACHE} (repo {cfg.get('hf_hub')})", "~/.cache/clip"]
        raise WeightsUnavailableError(_weights_help(spec, looked))
    return hit


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors or PyTorch state-dict file safely (``weights_only=True``).

    Unwraps a top-level ``state_dict`` / ``model`` entry and a DataParallel ``module.``
    prefix. Raises ``FileNotFoundError`` / ``CheckpointMismatchError`` with what to do.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointMismatchError(
                f"Could not read checkpoint {path} as a PyTorch state dict (weights_only=True): "
                f"{e}. Save it with torch.save(model.state_dict(), path) or as safetensors."
            ) from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointMismatchError(f"Checkpoint {path} does not hold a state dict of tensors.")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_checkpoint_into(module: nn.Module, path: Path, model_name: str) -> str:
    """Load ``path`` strictly into ``module``; return ``checkpoint:sha256:<hex>``.

    A mismatch raises :class:`CheckpointMismatchError` naming missing / unexpected keys.
    """
    sd = read_state_dict(path)
    result = module.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        def fmt(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        raise CheckpointMismatchError(
            f"Checkpoint {path} does not match model {model_name!r}: "
            f"missing keys [{fmt(result.missing_keys)}]; "
            f"unexpected keys [{fmt(result.unexpected_keys)}]. "
            "Pass the checkpoint of the same architecture."
        )
    return f"checkpoint:sha256:{sha256_file(path)}"


# --------------------------------------------------------------------------------------
# Loaders per family
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """How to load: weights source, preprocessing choice, CLIP settings, head cache dir."""

    weights: WeightsSource = WeightsSource()
    preprocessing: PreprocessingChoice = "paper"
    logit_scale: float = DEFAULT_LOGIT_SCALE
    cache_dir: Path | None = None


def register_bundled_open_clip_configs() -> None:
    """Make the bundled tiny open_clip configs (``test-tiny-clip``) known to open_clip."""
    from importlib.resources import files

    import open_clip

    path = Path(str(files("beyond_inet.resources") / "open_clip_configs"))
    if path.is_dir() and "test-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(path)


Loader = Callable[[ModelSpec, LoadOptions], LoadedModel]
LOADERS: Registry[Loader] = Registry("model family")


def _choose_preprocessing(spec: ModelSpec, weights_pp: Preprocessing, choice: str) -> Preprocessing:
    if choice == "paper" and spec.paper_preprocessing is not None:
        return spec.paper_preprocessing
    if choice not in ("paper", "weights"):
        raise ValueError(f"preprocessing must be 'paper' or 'weights', got {choice!r}")
    return weights_pp


def create_timm_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with ``dynamic_img_size=True`` where the architecture takes it
    (ViTs: position embeddings resampled per forward, bicubic + antialias as timm's
    ``resample_abs_pos_embed``; identical outputs at the native size), so resolution views
    can run the model at other input sizes. Seeded, so random weights are reproducible."""
    import timm

    torch.manual_seed(RANDOM_SEED)
    try:
        return timm.create_model(name, dynamic_img_size=True, **kwargs)
    except TypeError as e:  # raised by the constructor, before any weights are read
        if "dynamic_img_size" not in str(e):
            raise
    torch.manual_seed(RANDOM_SEED)
    return timm.create_model(name, **kwargs)


@LOADERS.register("timm")
def load_timm(spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
    """Build a timm classifier from the hub cache, a checkpoint, or random init."""
    from timm.data import resolve_data_config

    full = spec.arch + (f".{spec.tag}" if spec.tag else "")
    kind = opts.weights.kind
    if kind == "hub":
        path = _resolve_timm_file(spec)
        overlay = {"file": path} if path else None
        module = create_timm_model(full, pretrained=True, pretrained_cfg_overlay=overlay)
        weights = spec.hub_id
    else:
        module = create_timm_model(full, pretrained=False)
        weights = "random"
        if kind == "checkpoint":
            assert opts.weights.checkpoint is not None
            weights = load_checkpoint_into(module, opts.weights.checkpoint, spec.name)
    module.eval()
    weights_pp = from_timm_config(resolve_data_config(model=module))
    pp = _choose_preprocessing(spec, weights_pp, opts.preprocessing)
    return LoadedModel(spec.name, spec, module, pp, weights, {"head": "supervised"})


class ZeroShotClassifier(nn.Module):
    """CLIP image tower + fixed text head: ``logit_scale * norm(f(x)) @ head``."""

    def __init__(self, clip: nn.Module, head: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("head", head)
        self.logit_scale = float(logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> [B, 1000] logits (any input size a ViT tower's patch grid
        allows: see :func:`resampled_clip_pos_embed`)."""
        pos = resampled_clip_pos_embed(self.clip.visual, x.shape[-2], x.shape[-1])
        if pos is None:
            feats = self.clip.encode_image(x)
        else:
            feats = torch.func.functional_call(self.clip.visual, {"positional_embedding": pos},
                                               (x,))
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return self.logit_scale * feats @ self.head.float()


def resampled_clip_pos_embed(visual: nn.Module, height: int, width: int) -> torch.Tensor | None:
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


def default_cache_dir() -> Path:
    """``$BEYOND_INET_CACHE`` or ``~/.cache/beyond_inet``."""
    return Path(os.environ.get("BEYOND_INET_CACHE", Path.home() / ".cache" / "beyond_inet"))


@lru_cache(maxsize=1)
def openai_templates() -> tuple[str, ...]:
    """The 80 OpenAI ImageNet prompt templates as format strings (open_clip's list)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def _zero_shot_head(
    clip: nn.Module, spec: ModelSpec, weights: str, cache_dir: Path
) -> tuple[torch.Tensor, str]:
    """The [D, 1000] text head, read from or written to the on-disk cache."""
    import open_clip
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    templates = list(openai_templates())
    key_src = json.dumps(
        {"arch": spec.arch, "weights": weights, "templates": templates,
         "classnames": list(IMAGENET_CLASSNAMES)}, sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    safe_arch = spec.arch.replace("/", "_")
    path = cache_dir / "zeroshot_heads" / f"{safe_arch}-{spec.tag}-{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True), str(path)
    device = next(clip.parameters()).device
    with torch.no_grad():
        head = build_zero_shot_classifier(
            clip, open_clip.get_tokenizer(spec.arch), IMAGENET_CLASSNAMES,
            OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=10, device=device, use_tqdm=True,
        ).float().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(head, tmp)
    tmp.replace(path)
    return head, str(path)


def random_head(dim: int, n_classes: int = 1000) -> torch.Tensor:
    """A seeded random unit-norm [dim, n_classes] head for ``--random-weights`` runs."""
    g = torch.Generator().manual_seed(RANDOM_SEED)
    return torch.nn.functional.normalize(torch.randn(dim, n_classes, generator=g), dim=0)


@LOADERS.register("open_clip")
def load_open_clip(spec: ModelSpec, opts: LoadOptions) -> LoadedModel:
    """Build an open_clip zero-shot classifier (80 OpenAI templates, explicit logit scale)."""
    import open_clip

    kind = opts.weights.kind
    if kind == "hub":
        path = _resolve_open_clip_file(spec)
        # A cached file loads like a checkpoint: carry the tag's own preprocessing and
        # activation settings over explicitly so they still travel with the weights.
        tag_cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag or "")
        clip = open_clip.create_model(
            spec.arch, pretrained=path or spec.tag,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg={k: tag_cfg[k] for k in OPEN_CLIP_PREPROCESS_KEYS
                                  if k in tag_cfg} or None,
        )
        weights = spec.hub_id
    else:
        torch.manual_seed(RANDOM_SEED)
        clip = open_clip.create_model(spec.arch, pretrained=None)
        weights = "random"
        if kind == "checkpoint":
            assert opts.weights.checkpoint is not None
            weights = load_checkpoint_into(clip, opts.weights.checkpoint, spec.name)
    clip.eval()
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
        head, settings["head_cache"] = _zero_shot_head(
            clip, spec, weights, opts.cache_dir or default_cache_dir()
        )
    module = ZeroShotClassifier(clip, head, opts.logit_scale).eval()
    weights_pp = from_open_clip_config(open_clip.get_model_preprocess_cfg(clip))
    pp = _choose_preprocessing(spec, weights_pp, opts.preprocessing)
    return LoadedModel(spec.name, spec, module, pp, weights, settings)


def load_model(name: str, opts: LoadOptions | None = None) -> LoadedModel:
    """Resolve ``name`` and load it (see module docstring); fails fast without weights."""
    spec = resolve_spec(name)
    return LOADERS.get(spec.family)(spec, opts or LoadOptions())
