"""The model contract every family implements.

A :class:`Classifier` splits its forward pass in two:

* ``trunk(x)``: the backbone on a normalised float batch ``[B, 3, H, W]`` — the expensive
  part, which may run under reduced-precision autocast;
* ``head(t)``: the final projection to ``[B, 1000]`` ImageNet logits (timm: ``forward_head``;
  CLIP: normalisation and the zero-shot text head) — always run in fp32 by the engine.

``forward(x) == head(trunk(x))``. ``features(x)`` is the pre-logits embedding ``[B, D]``
(timm ``forward_head(pre_logits=True)``, CLIP ``encode_image``) for representation analyses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from beyond_inet.models.base import PRECISIONS


class Classifier(nn.Module):
    """Base class of every loaded model's module (see the module docstring)."""

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output (anything :meth:`head` takes)."""
        raise NotImplementedError

    def head(self, t: torch.Tensor) -> torch.Tensor:
        """Trunk output -> ``[B, 1000]`` logits."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-logits embedding ``[B, D]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``head(trunk(x))``."""
        return self.head(self.trunk(x))


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


def logits_of(
    module: Classifier, x: torch.Tensor, precision: str = "fp32", trunk: nn.Module | None = None
) -> torch.Tensor:
    """fp32 logits: the trunk at ``precision``, the head in fp32 with autocast off.

    ``trunk`` is an optional compiled replacement for ``module.trunk`` (``torch.compile``).
    """
    with trunk_precision(x.device, precision):
        t = (trunk or module.trunk)(x)
    with torch.autocast(x.device.type, enabled=False):
        return module.head(_to_fp32(t)).float()


def _to_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t
