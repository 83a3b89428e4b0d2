"""Finding weights: hub cache lookups, a fast offline check, checkpoint files.

Missing weights fail in seconds with a message that says where we looked and what to do
(``python -m precompute --fetch-weights --model NAME`` on a machine with internet).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from beyond_inet.models.base import CheckpointMismatchError, ModelSpec, WeightsUnavailableError


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


def hf_cached(repo_id: str, filenames: tuple[str, ...], revision: str | None = None) -> str | None:
    """The first of ``filenames`` in the local Hugging Face cache of ``repo_id`` (at
    ``revision``, default ``main``), or None."""
    from huggingface_hub import try_to_load_from_cache

    for fn in filenames:
        hit = try_to_load_from_cache(repo_id, fn, revision=revision)
        if isinstance(hit, str):
            return hit
    return None


def torch_hub_cached(url: str) -> str | None:
    """The torch hub checkpoint file for ``url`` if it is cached."""
    import torch

    if not url:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return str(path) if path.is_file() else None


def fetch_command(name: str) -> str:
    """The command that downloads a model's weights for later offline runs."""
    return f"python -m precompute --fetch-weights --model {name}"


def weights_help(spec: ModelSpec, looked: list[str]) -> str:
    """The one-paragraph 'weights missing' message (used by the CLI and the dashboard)."""
    from huggingface_hub import constants

    where = "; ".join(looked)
    return (
        f"Pretrained weights for model {spec.name!r} ({spec.hub_id}) are not in the local cache "
        f"and the hub ({constants.ENDPOINT}) cannot be reached. Looked in: {where}. "
        f"To fix: on a machine with internet run `{fetch_command(spec.name)}` and copy its "
        "Hugging Face cache here (HF_HOME, default ~/.cache/huggingface), or run that command "
        "here once the hub is reachable; or pass --checkpoint PATH to a local "
        "safetensors/state-dict file; or use --random-weights for a smoke test (meaningless "
        "numbers)."
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_GLOBAL = re.compile(r"Unsupported global: GLOBAL (?P<name>\S+)")


def _torch_load_reason(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice to turn
    the safety off (never follow that for a file you did not make)."""
    text = str(e)
    m = _GLOBAL.search(text)
    if m:
        return f"it pickles objects other than tensors ({m['name']})"
    if "WeightsUnpickler" in text or "weights_only" in text or "pickle" in text.lower():
        return "it is not a readable PyTorch checkpoint (corrupt or another format)"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return first[:300]


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a safetensors or PyTorch state-dict file safely (``weights_only=True``).

    Unwraps a top-level ``state_dict`` / ``model`` entry and a DataParallel ``module.``
    prefix. Raises ``FileNotFoundError`` / ``CheckpointMismatchError`` with what to do.
    """
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
    advice = "Save it with torch.save(model.state_dict(), path) or as safetensors."
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointMismatchError(
                f"Could not read checkpoint {path} as safetensors: {str(e).splitlines()[0]}. "
                f"Is it a complete .safetensors file? {advice}"
            ) from None
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointMismatchError(
                f"Could not read checkpoint {path} as a PyTorch state dict: "
                f"{_torch_load_reason(e)}. {advice}"
            ) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not hold a state dict of tensors. " + advice
        )
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_checkpoint_into(module: Any, path: Path, model_name: str) -> str:
    """Load ``path`` strictly into ``module``; return ``checkpoint:sha256:<hex>``.

    A mismatch raises :class:`CheckpointMismatchError` naming missing / unexpected keys.
    """
    sd = read_state_dict(path)
    try:
        result = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not match model {model_name!r}: "
            f"{' '.join(str(e).split())[:400]}. Pass the checkpoint of the same architecture."
        ) from None
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


def unavailable(spec: ModelSpec, looked: list[str]) -> WeightsUnavailableError:
    """The error for weights that are neither cached nor downloadable."""
    return WeightsUnavailableError(weights_help(spec, looked))
