"""Views: named ways of turning one decoded image into a model input.

``standard`` is the model's own evaluation preprocessing. View families (``scale:<s>``,
``shift:<n>``, ...) register a parser under their prefix in :data:`VIEW_FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from beyond_inet.preprocess import Preprocessing, standard_transform
from beyond_inet.registry import Registry

Transform = Callable[[torch.Tensor, Preprocessing], torch.Tensor]


def _same_size(pp: Preprocessing) -> int:
    return pp.crop_size


@dataclass(frozen=True)
class View:
    """A named transform ``(uint8 CHW image, preprocessing) -> normalised float CHW``.

    ``input_size`` gives the side of the square the model runs at for this view.
    """

    name: str
    transform: Transform = field(compare=False)
    input_size: Callable[[Preprocessing], int] = field(default=_same_size, compare=False)


STANDARD = View("standard", standard_transform)

#: prefix -> parser taking the text after ``prefix:`` and returning a View.
VIEW_FAMILIES: Registry[Callable[[str], View]] = Registry("view family")
VIEW_FAMILIES.add("standard", lambda _arg: STANDARD)


def parse_view(name: str) -> View:
    """``'standard'`` or ``'<family>:<arg>'`` -> View; unknown families suggest close names."""
    family, _, arg = name.partition(":")
    return VIEW_FAMILIES.get(family)(arg)
