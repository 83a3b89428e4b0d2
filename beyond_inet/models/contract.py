"""The model contract every family implements.

A :class:`Classifier` splits its forward pass in two:

* ``trunk(x)``: the backbone on a normalised float batch ``[B, 3, H, W]`` — the expensive
  part, which may run under reduced-precision autocast;
* ``head(t)``: the final projection to ``[B, 1000]`` ImageNet logits (timm: ``forward_head``;
  CLIP: normalisation and the zero-shot text head) — always run in fp32 by the engine.

``forward(x) == head(trunk(x))``. ``pooled(t)`` turns the trunk's output into the pre-logits
embedding ``[B, D]`` (timm ``forward_head(pre_logits=True)``, CLIP ``encode_image``), so
``features(x) == pooled(trunk(x))`` and a pass that wants logits and features runs the trunk
once. ``tap_points()`` names the layers a representation analysis may read (timm
``feature_info``: ViT blocks, ConvNeXt / ResNet stages; open_clip's visual blocks); each
tap's output is pooled to ``[B, C]`` by :meth:`Classifier.pool_tap`. Zero-shot models add
``embedding(t)`` (the unit-norm image embedding) and ``text_head_for(labels, templates)``.
Callers ask :attr:`Classifier.capabilities` instead of checking types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from beyond_inet.settings import PRECISIONS

#: Capabilities: "logits" and "features" always; "taps" with tap points; "text_labels" for
#: zero-shot models (custom labels, image embeddings).
CAPABILITIES = ("logits", "features", "taps", "text_labels")


def pool_activation(
    out: torch.Tensor, prefix_tokens: int = 0, tokens: str = "mean"
) -> torch.Tensor:
    """A layer's output -> ``[B, C]``: a feature map ``[B, C, H, W]`` is averaged over
    positions; tokens ``[B, T, C]`` over the patch tokens (the first ``prefix_tokens`` —
    class / register tokens — left out), or the first token with ``tokens='cls'``."""
    if isinstance(out, tuple | list):
        out = out[0]
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        if tokens == "cls" and prefix_tokens > 0:
            return out[:, 0]
        return (
            out[:, prefix_tokens:].mean(dim=1) if out.shape[1] > prefix_tokens else out.mean(dim=1)
        )
    if out.ndim == 2:
        return out
    raise ValueError(f"cannot pool a layer output of shape {tuple(out.shape)}")


class Classifier(nn.Module):
    """Base class of every loaded model's module (see the module docstring)."""

    #: prefix (class / register) tokens in the trunk's token sequences (ViTs)
    prefix_tokens: int = 0

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output (anything :meth:`head` and :meth:`pooled` take)."""
        raise NotImplementedError

    def head(self, t: torch.Tensor) -> torch.Tensor:
        """Trunk output -> ``[B, 1000]`` logits."""
        raise NotImplementedError

    def pooled(self, t: torch.Tensor) -> torch.Tensor:
        """Trunk output -> the pre-logits embedding ``[B, D]``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-logits embedding ``[B, D]`` of a batch."""
        return self.pooled(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``head(trunk(x))``."""
        return self.head(self.trunk(x))

    def tap_points(self) -> dict[str, nn.Module]:
        """Named layers whose outputs a representation analysis may read, input to output."""
        return {}

    def pool_tap(self, name: str, out: torch.Tensor, tokens: str = "mean") -> torch.Tensor:
        """A tap's output -> ``[B, C]`` (:func:`pool_activation`)."""
        return pool_activation(out, self.prefix_tokens, tokens)

    def embedding(self, t: torch.Tensor) -> torch.Tensor | None:
        """The unit-norm image embedding of a zero-shot model's trunk output, else None."""
        return None

    def text_head_for(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """A zero-shot head ``[D, len(labels)]`` for other labels (zero-shot models only)."""
        raise NotImplementedError(f"{type(self).__name__} has no text tower")

    @property
    def capabilities(self) -> frozenset[str]:
        """What this model can produce (see :data:`CAPABILITIES`)."""
        caps = {"logits", "features"}
        if self.tap_points():
            caps.add("taps")
        if type(self).embedding is not Classifier.embedding:
            caps.add("text_labels")
        return frozenset(caps)


@contextlib.contextmanager
def trunk_precision(device: torch.device | str, precision: str) -> Iterator[None]:
    """Autocast for the trunk: bf16 autocast on ``device`` for ``bf16``, nothing for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield


def _to_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t


def run_trunk(
    module: Classifier, x: torch.Tensor, precision: str = "fp32", trunk: nn.Module | None = None
) -> torch.Tensor:
    """The trunk at ``precision`` (``trunk``: an optional compiled ``module.trunk``)."""
    with trunk_precision(x.device, precision):
        return (trunk or module.trunk)(x)


def head_fp32(module: Classifier, t: torch.Tensor) -> torch.Tensor:
    """fp32 logits from a trunk output: the head with autocast off on fp32 inputs."""
    with torch.autocast(t.device.type, enabled=False):
        return module.head(_to_fp32(t)).float()


def pooled_fp32(module: Classifier, t: torch.Tensor) -> torch.Tensor:
    """The fp32 pre-logits embedding from a trunk output."""
    with torch.autocast(t.device.type, enabled=False):
        return module.pooled(_to_fp32(t)).float()


def logits_of(
    module: Classifier, x: torch.Tensor, precision: str = "fp32", trunk: nn.Module | None = None
) -> torch.Tensor:
    """fp32 logits: the trunk at ``precision``, the head in fp32 with autocast off."""
    return head_fp32(module, run_trunk(module, x, precision, trunk))
