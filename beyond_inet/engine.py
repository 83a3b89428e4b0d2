"""The single-pass engine: decode each image once, run every model and view on it.

Per image and view it produces top-5 classes and probabilities, the probability of the
true class, the max probability, correctness, the per-image Brier term and, where the
dataset has a decision rule (cue-conflict), the decision. Scoring lives elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from beyond_inet.data import DecodedImages, FoundDataset, collate_decoded
from beyond_inet.models import LoadedModel
from beyond_inet.models.contract import PRECISIONS, logits_of
from beyond_inet.registry import Registry
from beyond_inet.views import STANDARD, View

TOPK = 5


@dataclass(frozen=True)
class DecisionRule:
    """Maps [B, 1000] probabilities to a decision index into ``labels``."""

    labels: tuple[str, ...]
    decide: Callable[[torch.Tensor], torch.Tensor]


DECISIONS: Registry[Callable[[], DecisionRule]] = Registry("decision rule")


@DECISIONS.register("cue_conflict_16")
def _cue_conflict_rule() -> DecisionRule:
    from beyond_inet.cue_conflict import CATEGORIES, decision_from_probs_torch

    return DecisionRule(tuple(CATEGORIES), decision_from_probs_torch)


@dataclass(frozen=True)
class RunSettings:
    """How to run: device, precision, batch size, workers, optional torch.compile, progress.

    ``precision``: ``fp32`` (the paper's) or ``bf16`` (the trunk under bf16 autocast); the
    head (final projection / zero-shot head), softmax and metrics are always fp32.
    """

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 2
    compile: bool = False
    progress: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def cuda(self) -> bool:
        """True when running on a CUDA device."""
        return torch.device(self.device).type == "cuda"


def resolve_device(choice: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use cpu.")
    return choice


@dataclass
class PredictionArrays:
    """Per-image outputs of one (model, view), aligned with ``index`` into the samples."""

    index: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    p_true: np.ndarray
    topk_idx: np.ndarray
    topk_prob: np.ndarray
    brier: np.ndarray
    decision: np.ndarray | None = None
    pred_full: np.ndarray | None = None


@dataclass
class _Accumulator:
    chunks: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            self.chunks.setdefault(k, []).append(v)

    def finish(self) -> PredictionArrays:
        cat = {k: np.concatenate(v) for k, v in self.chunks.items()}
        if not cat:
            empty = np.zeros(0)
            return PredictionArrays(
                empty.astype(np.int64),
                empty.astype(np.int64),
                empty,
                empty,
                np.zeros((0, TOPK), np.int64),
                np.zeros((0, TOPK)),
                empty,
            )
        return PredictionArrays(**cat)


@dataclass
class PassResult:
    """Everything one pass over a dataset produced."""

    outputs: dict[tuple[str, str], PredictionArrays]
    failed: list[tuple[str, str]]
    n_images: int
    seconds: float
    decision_labels: tuple[str, ...] | None = None


@dataclass
class _Prepared:
    """A model on the device, with its (optionally compiled) trunk."""

    model: LoadedModel
    trunk: Callable[[torch.Tensor], torch.Tensor] | None = None

    def logits(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        return logits_of(self.model.module, x, precision, self.trunk)  # type: ignore[arg-type]


def _prepare(model: LoadedModel, settings: RunSettings) -> _Prepared:
    module = model.module.to(settings.device).eval()
    if settings.cuda:
        module = module.to(memory_format=torch.channels_last)
    trunk = torch.compile(module.trunk) if settings.compile else None
    return _Prepared(model, trunk)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClassSubset:
    """Restricts 1000-way logits to ``indices`` (ImageNet-1k ids, e.g. ImageNet-R's 200)."""

    indices: torch.Tensor  # [K] long
    position: torch.Tensor  # [1000] long: index into ``indices`` or -1

    @classmethod
    def of(cls, indices: Sequence[int], device: str = "cpu") -> ClassSubset:
        """Build from ImageNet-1k indices."""
        idx = torch.tensor(list(indices), dtype=torch.long, device=device)
        pos = torch.full((1000,), -1, dtype=torch.long, device=device)
        pos[idx] = torch.arange(len(idx), device=device)
        return cls(idx, pos)


def score_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rule: DecisionRule | None,
    subset: ClassSubset | None = None,
) -> dict[str, np.ndarray]:
    """fp32 softmax -> per-image outputs (labels < 0 mean 'no label': p_true = NaN).

    With ``subset`` the softmax runs over those classes only; predictions and top-k stay
    ImageNet-1k indices, and ``pred_full`` keeps the plain 1000-way argmax.
    """
    logits = logits.float()
    extra: dict[str, np.ndarray] = {}
    if subset is not None:
        extra["pred_full"] = logits.argmax(-1).cpu().numpy()
        logits = logits[:, subset.indices]
        labels = torch.where(labels >= 0, subset.position[labels.clamp(min=0)], -1)
    probs = torch.softmax(logits, dim=-1)
    top_p, top_i = probs.topk(min(TOPK, probs.shape[-1]), dim=-1)
    has = labels >= 0
    p_true = torch.where(has, probs.gather(1, labels.clamp(min=0)[:, None])[:, 0], torch.nan)
    brier = (probs * probs).sum(-1) - 2 * p_true + 1
    if subset is not None:
        top_i = subset.indices[top_i]
    out = {
        **extra,
        "pred": top_i[:, 0].cpu().numpy(),
        "confidence": top_p[:, 0].cpu().numpy(),
        "p_true": p_true.cpu().numpy(),
        "topk_idx": top_i.cpu().numpy(),
        "topk_prob": top_p.cpu().numpy(),
        "brier": brier.cpu().numpy(),
    }
    if rule is not None:
        out["decision"] = rule.decide(probs).cpu().numpy()
    return out


def _view_batch(
    images: list[torch.Tensor], view: View, model: LoadedModel, settings: RunSettings
) -> torch.Tensor:
    batch = torch.stack([view.transform(img, model.preprocessing) for img in images])
    if settings.cuda:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def run_pass(
    found: FoundDataset,
    models: Sequence[LoadedModel],
    settings: RunSettings,
    views: dict[str, Sequence[View]] | None = None,
    rule: DecisionRule | None = None,
) -> PassResult:
    """Decode every sample of ``found`` once and evaluate all ``models`` x their views.

    ``views`` maps model name -> views (default: ``standard`` only). Undecodable images
    are skipped and returned in ``failed`` as (sample_id, error).
    """
    views = views or {m.name: [STANDARD] for m in models}
    subset = (
        ClassSubset.of(found.spec.class_subset(), settings.device)
        if found.spec.class_subset
        else None
    )
    modules = {m.name: _prepare(m, settings) for m in models}
    accs = {(m.name, v.name): _Accumulator() for m in models for v in views[m.name]}
    labels_all = torch.tensor([s.label for s in found.samples], dtype=torch.long)
    loader = torch.utils.data.DataLoader(
        DecodedImages(found.samples),
        batch_size=settings.batch_size,
        num_workers=settings.workers,
        collate_fn=collate_decoded,
        pin_memory=settings.cuda,
        persistent_workers=False,
    )
    failed: list[tuple[str, str]] = []
    start = time.perf_counter()
    bar = tqdm(
        total=len(found.samples), desc=found.spec.name, unit="img", disable=not settings.progress
    )
    with torch.inference_mode(), bar:
        for batch in loader:
            ok = [d for d in batch if d.image is not None]
            failed += [
                (found.samples[d.index].sample_id, d.error or "") for d in batch if d.image is None
            ]
            bar.update(len(batch))
            if not ok:
                continue
            index = np.array([d.index for d in ok])
            labels = labels_all[index].to(settings.device)
            images = [d.image.to(settings.device, non_blocking=True) for d in ok]  # type: ignore[union-attr]
            for m in models:
                for v in views[m.name]:
                    x = _view_batch(images, v, m, settings)
                    logits = modules[m.name].logits(x, settings.precision)
                    accs[(m.name, v.name)].add(
                        index=index, **score_logits(logits, labels, rule, subset)
                    )
    seconds = time.perf_counter() - start
    return PassResult(
        outputs={k: a.finish() for k, a in accs.items()},
        failed=failed,
        n_images=len(found.samples),
        seconds=seconds,
        decision_labels=rule.labels if rule else None,
    )
