"""The single-pass engine: decode each image once, run every model and view on it.

A pass evaluates one shard of a dataset's samples (all of them by default) and returns,
per (model, view), the output channels that were asked for, keyed by sample index:

* ``per_image`` — the logits-derived per-image outputs (:class:`LogitOutputs`: top-5 classes
  and probabilities, the true class's probability, the Brier term, the dataset's decision);
* ``features`` — the pre-logits embedding (:class:`Features`);
* ``taps`` — named layer activations, pooled per image (for representation analyses);
* ``logits`` — the full fp32 logits of the ``standard`` view (:class:`Features`), for fits
  that need them (the temperature of ImageNet val).

With ``temperatures`` (model -> T) the ``standard`` view's per-image outputs also hold the
confidence, true-class probability and Brier term of ``softmax(logits / T)``.

The trunk runs once per batch for all channels. Scoring lives elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from beyond_inet.datasets.base import DecisionRule, FoundDataset
from beyond_inet.datasets.decode import Decoded, DecodedImages, collate_decoded
from beyond_inet.models.base import LoadedModel
from beyond_inet.models.contract import head_fp32, pooled_fp32, run_trunk
from beyond_inet.scoring.metrics import brier_per_image
from beyond_inet.settings import DEFAULT_BATCH_SIZE, PRECISIONS
from beyond_inet.transforms.views import STANDARD, View

TOPK = 5
#: A streaming consumer of pooled taps: (model name, sample indices, tap name -> [B, C]).
TapSink = Callable[[str, np.ndarray, dict[str, np.ndarray]], None]
PER_IMAGE, FEATURES, TAPS, LOGITS = "per_image", "features", "taps", "logits"
CHANNELS = (PER_IMAGE, FEATURES, TAPS, LOGITS)
#: The outputs of :func:`score_logits` that temperature scaling changes (stored with ``_ts``).
SCALED = ("confidence", "p_true", "brier")


@dataclass(frozen=True)
class RunSettings:
    """How to run: device, precision, batch size, workers, optional torch.compile, progress.

    ``precision``: ``fp32`` (the paper's) or ``bf16`` (the trunk under bf16 autocast); the
    head (final projection / zero-shot head), softmax and metrics are always fp32.
    """

    device: str = "cpu"
    batch_size: int = DEFAULT_BATCH_SIZE
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


@dataclass(frozen=True)
class Shard:
    """Which samples a pass evaluates: the sample positions are cut into consecutive blocks
    (the pass uses its batch size), block ``k`` belongs to shard ``k % count``
    (deterministic, disjoint across the ``count`` shards; every view of an image is
    evaluated by the shard that has the image). Whole batches, so each batch holds the same
    images as in a single process and the per-image numbers are bitwise the same.
    ``Shard()`` is all of them."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def positions(self, n: int, block: int = 1) -> list[int]:
        """This shard's sample positions among ``n``, in blocks of ``block``."""
        return [
            i
            for start in range(self.index * block, n, self.count * block)
            for i in range(start, min(start + block, n))
        ]


# --------------------------------------------------------------------------- outputs


@dataclass
class LogitOutputs:
    """Logits-derived per-image outputs of one (model, view), aligned with ``index``."""

    index: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    p_true: np.ndarray
    topk_idx: np.ndarray
    topk_prob: np.ndarray
    brier: np.ndarray
    decision: np.ndarray | None = None
    pred_full: np.ndarray | None = None
    confidence_ts: np.ndarray | None = None
    p_true_ts: np.ndarray | None = None
    brier_ts: np.ndarray | None = None

    @classmethod
    def empty(cls) -> LogitOutputs:
        """No image (every image of the shard failed to decode)."""
        z = np.zeros(0)
        return cls(
            z.astype(np.int64),
            z.astype(np.int64),
            z,
            z,
            np.zeros((0, TOPK), np.int64),
            np.zeros((0, TOPK)),
            z,
        )


@dataclass
class Features:
    """A per-image embedding of one (model, view): ``values[i]`` belongs to ``index[i]``."""

    index: np.ndarray
    values: np.ndarray


@dataclass
class PassResult:
    """Everything one pass over a dataset (shard) produced, keyed by (model, view)."""

    outputs: dict[tuple[str, str], LogitOutputs]
    failed: list[tuple[str, str]]
    n_images: int
    seconds: float
    decision_labels: tuple[str, ...] | None = None
    features: dict[tuple[str, str], Features] = field(default_factory=dict)
    taps: dict[tuple[str, str], dict[str, Features]] = field(default_factory=dict)
    logits: dict[tuple[str, str], Features] = field(default_factory=dict)


class _Chunks:
    """Per-key lists of batch arrays, concatenated at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, **arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            self.parts.setdefault(k, []).append(v)

    def joined(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}


# --------------------------------------------------------------------------- scoring logits


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
    """fp32 softmax -> per-image outputs (labels < 0 mean 'no label': p_true, brier NaN).

    With ``subset`` the softmax runs over those classes only; predictions and top-k stay
    ImageNet-1k indices, and ``pred_full`` keeps the plain 1000-way argmax. The Brier term
    is :func:`beyond_inet.scoring.metrics.brier_per_image` of the softmax.
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
    if subset is not None:
        top_i = subset.indices[top_i]
    has_np, labels_np = has.cpu().numpy(), labels.clamp(min=0).cpu().numpy()
    brier = np.full(len(labels_np), np.nan)
    if has_np.any():
        brier[has_np] = brier_per_image(probs[has].cpu().numpy(), labels_np[has_np])
    out = {
        **extra,
        "pred": top_i[:, 0].cpu().numpy(),
        "confidence": top_p[:, 0].cpu().numpy(),
        "p_true": p_true.cpu().numpy(),
        "topk_idx": top_i.cpu().numpy(),
        "topk_prob": top_p.cpu().numpy(),
        "brier": brier,
    }
    if rule is not None:
        out["decision"] = rule.decide(probs).cpu().numpy()
    return out


# --------------------------------------------------------------------------- the pass


@dataclass
class _Prepared:
    """A model on the device, with its (optionally compiled) trunk and tap hooks."""

    model: LoadedModel
    trunk: Callable[[torch.Tensor], torch.Tensor] | None = None
    taps: dict[str, torch.Tensor] = field(default_factory=dict)
    hooks: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)

    def watch(self, names: Iterable[str], tokens: str) -> None:
        """Capture the pooled output of each named tap on every forward."""
        module = self.model.module
        points = module.tap_points()
        for name in names:
            if name not in points:
                raise ValueError(
                    f"{self.model.name} has no tap {name!r}; it has {', '.join(points) or 'none'}"
                )

            def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor, n: str = name) -> None:
                self.taps[n] = module.pool_tap(n, out, tokens).float()

            self.hooks.append(points[name].register_forward_hook(hook))

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def _prepare(model: LoadedModel, settings: RunSettings) -> _Prepared:
    module = model.module.to(settings.device).eval()
    if settings.cuda:
        module = module.to(memory_format=torch.channels_last)
    trunk = torch.compile(module.trunk) if settings.compile else None
    return _Prepared(model, trunk)  # type: ignore[arg-type]


def _view_batch(
    images: list[torch.Tensor], view: View, model: LoadedModel, settings: RunSettings
) -> torch.Tensor:
    batch = torch.stack([view.transform(img, model.preprocessing) for img in images])
    if settings.cuda:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


@dataclass
class _Sinks:
    """Where a pass's outputs accumulate, per (model, view) and channel."""

    per_image: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    features: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    taps: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    logits: dict[tuple[str, str], _Chunks] = field(default_factory=dict)

    def chunks(self, channel: str, key: tuple[str, str]) -> _Chunks:
        return getattr(self, channel).setdefault(key, _Chunks())


def _run_batch(
    ok: list[Decoded],
    labels_all: torch.Tensor,
    prepared: dict[str, _Prepared],
    views: dict[str, Sequence[View]],
    settings: RunSettings,
    channels: frozenset[str],
    rule: DecisionRule | None,
    subset: ClassSubset | None,
    sinks: _Sinks,
    tap_sink: TapSink | None = None,
    temperatures: dict[str, float] | None = None,
) -> None:
    """Every model and view on one batch of decoded images."""
    index = np.array([d.index for d in ok])
    labels = labels_all[index].to(settings.device)
    images = [d.image.to(settings.device, non_blocking=True) for d in ok]  # type: ignore[union-attr]
    for name, p in prepared.items():
        for v in views[name]:
            x = _view_batch(images, v, p.model, settings)
            t = run_trunk(p.model.module, x, settings.precision, p.trunk)
            key = (name, v.name)
            standard = v.name == STANDARD.name
            if PER_IMAGE in channels or LOGITS in channels:
                logits = head_fp32(p.model.module, t)
            if PER_IMAGE in channels:
                out = score_logits(logits, labels, rule, subset)
                temperature = (temperatures or {}).get(name)
                if standard and temperature is not None:
                    scaled = score_logits(logits / temperature, labels, None, subset)
                    out.update({f"{k}_ts": scaled[k] for k in SCALED})
                sinks.chunks(PER_IMAGE, key).add(index=index, **out)
            if LOGITS in channels and standard:
                sinks.chunks(LOGITS, key).add(index=index, values=logits.cpu().numpy())
            if FEATURES in channels:
                feats = pooled_fp32(p.model.module, t).cpu().numpy()
                sinks.chunks(FEATURES, key).add(index=index, values=feats)
            if TAPS in channels and p.taps:
                pooled = {k: a.cpu().numpy() for k, a in p.taps.items()}
                if tap_sink is not None:
                    tap_sink(name, index, pooled)
                else:
                    sinks.chunks(TAPS, key).add(index=index, **pooled)


def _results(
    sinks: _Sinks, keys: list[tuple[str, str]], per_image: bool
) -> tuple[
    dict[tuple[str, str], LogitOutputs],
    dict[tuple[str, str], Features],
    dict[tuple[str, str], dict[str, Features]],
    dict[tuple[str, str], Features],
]:
    outputs = {k: LogitOutputs(**c.joined()) for k, c in sinks.per_image.items()}
    for k in keys:
        if per_image and k not in outputs:
            outputs[k] = LogitOutputs.empty()
    features = {k: Features(**c.joined()) for k, c in sinks.features.items()}
    taps = {}
    for k, c in sinks.taps.items():
        j = c.joined()
        taps[k] = {n: Features(j["index"], v) for n, v in j.items() if n != "index"}
    logits = {k: Features(**c.joined()) for k, c in sinks.logits.items()}
    return outputs, features, taps, logits


def run_pass(
    found: FoundDataset,
    models: Sequence[LoadedModel],
    settings: RunSettings,
    views: dict[str, Sequence[View]] | None = None,
    rule: DecisionRule | None = None,
    channels: Iterable[str] = (PER_IMAGE,),
    shard: Shard = Shard(),
    taps: dict[str, Sequence[str]] | None = None,
    tokens: str = "mean",
    tap_sink: TapSink | None = None,
    temperatures: dict[str, float] | None = None,
) -> PassResult:
    """Decode the samples of one ``shard`` of ``found`` once and evaluate all ``models`` x
    their views, producing the requested ``channels`` (see the module docstring).

    ``views`` maps model name -> views (default: ``standard`` only); ``taps`` maps model
    name -> tap names for the ``taps`` channel (``tokens``: how transformer taps pool).
    With ``tap_sink`` each batch's pooled taps go to it (``sink(model, index, taps)``, the
    models in order, every batch) instead of being kept: a streaming consumer (CKA) then
    never holds the activations of all images. ``temperatures`` maps model name -> the
    temperature its ``standard`` view is also scored at (the ``*_ts`` outputs). Undecodable
    images are skipped and returned in ``failed`` as (sample_id, error).
    """
    chans = frozenset(channels)
    unknown = chans - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown channel(s) {sorted(unknown)}; known: {', '.join(CHANNELS)}")
    views = views or {m.name: [STANDARD] for m in models}
    protocol_subset = found.spec.protocol.class_subset
    subset = ClassSubset.of(protocol_subset(), settings.device) if protocol_subset else None
    prepared = {m.name: _prepare(m, settings) for m in models}
    if TAPS in chans:
        for name, names in (taps or {}).items():
            prepared[name].watch(names, tokens)
    positions = shard.positions(len(found.samples), settings.batch_size)
    labels_all = torch.tensor([s.label for s in found.samples], dtype=torch.long)
    loader = torch.utils.data.DataLoader(
        DecodedImages(found.samples, positions, found.reader),
        batch_size=settings.batch_size,
        num_workers=settings.workers,
        collate_fn=collate_decoded,
        pin_memory=settings.cuda,
        persistent_workers=False,
    )
    failed: list[tuple[str, str]] = []
    sinks = _Sinks()
    start = time.perf_counter()
    desc = found.spec.name + (f" [shard {shard.index}/{shard.count}]" if shard.count > 1 else "")
    bar = tqdm(total=len(positions), desc=desc, unit="img", disable=not settings.progress)
    try:
        with torch.inference_mode(), bar:
            for batch in loader:
                ok = [d for d in batch if d.image is not None]
                failed += [
                    (found.samples[d.index].sample_id, d.error or "")
                    for d in batch
                    if d.image is None
                ]
                bar.update(len(batch))
                if ok:
                    _run_batch(
                        ok,
                        labels_all,
                        prepared,
                        views,
                        settings,
                        chans,
                        rule,
                        subset,
                        sinks,
                        tap_sink,
                        temperatures,
                    )
    finally:
        for p in prepared.values():
            p.close()
    outputs, features, tap_outputs, logits = _results(
        sinks, [(m.name, v.name) for m in models for v in views[m.name]], PER_IMAGE in chans
    )
    return PassResult(
        outputs=outputs,
        failed=failed,
        n_images=len(positions),
        seconds=time.perf_counter() - start,
        decision_labels=rule.labels if rule else None,
        features=features,
        taps=tap_outputs,
        logits=logits,
    )
