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

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from beyond_inet.datasets.base import DecisionRule, FoundDataset
from beyond_inet.datasets.decode import (
    Decoded,
    DecodedBatch,
    DecodedImages,
    DecodeWorkers,
    collate_decoded,
    decode_on_device,
    load_rgb,
    pil_to_tensor,
)
from beyond_inet.models.base import LoadedModel
from beyond_inet.models.contract import head_fp32, pooled_fp32, run_trunk
from beyond_inet.scoring.metrics import brier_per_image
from beyond_inet.settings import DECODERS, DEFAULT_BATCH_SIZE, PRECISIONS, default_batch_size
from beyond_inet.transforms.preprocess import Preprocessing
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
    """How to run: device, precision, batch size, workers, optional torch.compile, progress,
    the fp32 matmul policy and the decoder.

    ``precision``: ``fp32`` (the paper's) or ``bf16`` (the trunk under bf16 autocast); the
    head (final projection / zero-shot head), softmax and metrics are always fp32.
    ``tf32``: let fp32 matmuls and convolutions use TF32 on GPUs that have it (off: fp32
    means IEEE fp32). ``decode``: one of :data:`~beyond_inet.datasets.decode.DECODERS`.
    """

    device: str = "cpu"
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 2
    compile: bool = False
    progress: bool = True
    precision: str = "fp32"
    tf32: bool = False
    decode: str = "pil"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {self.decode!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def cuda(self) -> bool:
        """True when running on a CUDA device."""
        return torch.device(self.device).type == "cuda"

    def identity(self) -> dict[str, object]:
        """What of these settings can change a stored number: the device kind and name,
        precision, the TF32 policy, the decoder, the batch size and torch.compile (see the
        README, "Run identity")."""
        return {
            "device": device_name(self.device),
            "precision": self.precision,
            "tf32": self.tf32 and self.cuda,
            "decode": self.decode,
            "batch_size": self.batch_size,
            "compile": self.compile,
        }


def device_name(device: str) -> str:
    """``cpu``, or ``cuda: <GPU name>`` (e.g. ``cuda: NVIDIA H200``)."""
    d = torch.device(device)
    if d.type != "cuda":
        return d.type
    return f"cuda: {torch.cuda.get_device_name(d)}"


def runtime_versions() -> dict[str, str]:
    """torch's version and the CUDA / cuDNN it runs with (empty on a CPU build)."""
    out = {"torch": torch.__version__}
    if torch.version.cuda and torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        cudnn = torch.backends.cudnn.version()
        if cudnn:
            out["cudnn"] = str(cudnn)
    return out


def apply_tf32_policy(tf32: bool) -> None:
    """Set fp32 matmuls and cuDNN convolutions to TF32 (``tf32``) or IEEE fp32 (torch's
    default lets cuDNN convolutions use TF32 on Ampere and newer GPUs)."""
    mode = "tf32" if tf32 else "ieee"
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9: the new API only
        backends.cuda.matmul.fp32_precision = mode
        backends.cudnn.conv.fp32_precision = mode
        backends.cudnn.rnn.fp32_precision = mode
    else:  # pragma: no cover - older torch
        backends.cuda.matmul.allow_tf32 = tf32
        backends.cudnn.allow_tf32 = tf32


def resolve_device(choice: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use cpu.")
    return choice


def resolve_batch_size(batch_size: int | None, device: str) -> int:
    """The user's batch size, or the default for the device (larger on a GPU, to fill it)."""
    return batch_size if batch_size is not None else default_batch_size(device)


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
    max_logit: np.ndarray | None = None
    logsumexp: np.ndarray | None = None
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
            max_logit=z,
            logsumexp=z,
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
        """Every key's batches concatenated, rows in sample-index order (a batch is
        evaluated grouped by image size)."""
        out = {k: np.concatenate(v) for k, v in self.parts.items()}
        if "index" in out:
            order = np.argsort(out["index"], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        return out


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


def score_logits_on_device(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rule: DecisionRule | None,
    subset: ClassSubset | None = None,
) -> dict[str, torch.Tensor]:
    """fp32 softmax -> per-image outputs as tensors on the logits' device, without a host
    sync (labels < 0 mean 'no label': p_true, brier NaN); see :func:`score_logits`."""
    logits = logits.float()
    out: dict[str, torch.Tensor] = {}
    if subset is not None:
        out["pred_full"] = logits.argmax(-1)
        logits = logits[:, subset.indices]
        labels = torch.where(labels >= 0, subset.position[labels.clamp(min=0)], -1)
    probs = torch.softmax(logits, dim=-1)
    top_p, top_i = _topk(probs, min(TOPK, probs.shape[-1]))
    has = labels >= 0
    safe = labels.clamp(min=0)
    nan = torch.full_like(top_p[:, 0], torch.nan)
    p_true = torch.where(has, probs.gather(1, safe[:, None])[:, 0], nan)
    brier = torch.where(has, brier_per_image(probs, safe), nan.double())
    if subset is not None:
        top_i = subset.indices[top_i]
    out.update(
        pred=top_i[:, 0],
        confidence=top_p[:, 0],
        p_true=p_true,
        topk_idx=top_i,
        topk_prob=top_p,
        brier=brier,
        max_logit=logits.max(-1).values,  # the OOD scores of the softmax's logits
        logsumexp=torch.logsumexp(logits, -1),
    )
    if rule is not None:
        out["decision"] = rule.decide(probs)
    return out


def _topk(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k probabilities and classes, exact ties broken towards the lowest class index
    on every device (a stable descending sort)."""
    values, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
    return values[:, :k], idx[:, :k]


def score_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rule: DecisionRule | None,
    subset: ClassSubset | None = None,
) -> dict[str, np.ndarray]:
    """fp32 softmax -> per-image outputs as numpy arrays (labels < 0 mean 'no label':
    p_true, brier NaN).

    With ``subset`` the softmax runs over those classes only; predictions and top-k stay
    ImageNet-1k indices, and ``pred_full`` keeps the plain 1000-way argmax. The Brier term
    is :func:`beyond_inet.scoring.metrics.brier_per_image` of the softmax.
    """
    return {
        k: v.cpu().numpy() for k, v in score_logits_on_device(logits, labels, rule, subset).items()
    }


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


class _Inputs:
    """One batch's decoded images on the device, sorted so that images of one size are
    contiguous; each (view, preprocessing) input is built once per batch, in one call per
    source size, and shared by every model with that recipe."""

    def __init__(self, images: list[torch.Tensor], channels_last: bool) -> None:
        self.groups: list[torch.Tensor] = []
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            self.groups.append(torch.stack(images[start:end]))
            start = end
        self.channels_last = channels_last
        self._built: dict[tuple[str, Preprocessing], torch.Tensor] = {}

    def release(self) -> None:
        """Drop the inputs built so far (a view is done)."""
        self._built.clear()

    def get(self, view: View, pp: Preprocessing) -> torch.Tensor:
        """The normalised float32 batch ``[B, 3, S, S]`` of ``view`` under ``pp``."""
        key = (view.name, pp)
        if key not in self._built:
            parts = [view.transform(g, pp) for g in self.groups]
            x = parts[0] if len(parts) == 1 else torch.cat(parts)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._built[key] = x
        return self._built[key]


def _outputs_of(
    p: _Prepared,
    x: torch.Tensor,
    labels: torch.Tensor,
    settings: RunSettings,
    channels: frozenset[str],
    standard: bool,
    scoring: tuple[DecisionRule | None, ClassSubset | None, float | None],
) -> dict[str, torch.Tensor]:
    """One model on one view's batch -> every requested output, as device tensors."""
    rule, subset, temperature = scoring
    t = run_trunk(p.model.module, x, settings.precision, p.trunk)
    out: dict[str, torch.Tensor] = {}
    logits = head_fp32(p.model.module, t) if PER_IMAGE in channels or LOGITS in channels else None
    if PER_IMAGE in channels and logits is not None:
        out.update(score_logits_on_device(logits, labels, rule, subset))
        if standard and temperature is not None:
            scaled = score_logits_on_device(logits / temperature, labels, None, subset)
            out.update({f"{k}_ts": scaled[k] for k in SCALED})
    if LOGITS in channels and standard and logits is not None:
        out["logits"] = logits
    if FEATURES in channels:
        out["features"] = pooled_fp32(p.model.module, t)
    if TAPS in channels:
        out.update({f"tap:{k}": a for k, a in p.taps.items()})
    return out


def _split_on_oom(
    compute: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    x: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``compute(x, labels)``; a batch that runs out of GPU memory is computed in halves
    (recursively) and the halves joined, so a large default batch never loses work."""
    try:
        return compute(x, labels)
    except torch.OutOfMemoryError:
        if len(x) < 2:
            raise
        torch.cuda.empty_cache()
    half = len(x) // 2
    a = _split_on_oom(compute, x[:half], labels[:half])
    b = _split_on_oom(compute, x[half:], labels[half:])
    return {k: torch.cat([a[k], b[k]]) for k in a}


class _Pending:
    """One batch's outputs on their way to the host: every array of every model and view
    packed into one float64 tensor and copied with ONE non-blocking copy into pinned memory
    (CUDA); read back by :meth:`resolve` after the next batch has been queued, so the GPU
    never waits for the host. float64 holds every output exactly (int64 class indices
    < 2**53, float32 values)."""

    def __init__(
        self, index: np.ndarray, parts: list[tuple[tuple[str, str], dict[str, torch.Tensor]]]
    ) -> None:
        self.index = index
        self.layout: list[tuple[tuple[str, str], str, torch.dtype, tuple[int, ...], int]] = []
        flat = []
        for key, arrays in parts:
            for name, a in arrays.items():
                cols = int(np.prod(a.shape[1:], dtype=np.int64))
                self.layout.append((key, name, a.dtype, tuple(a.shape[1:]), cols))
                flat.append(a.reshape(len(index), cols).to(torch.float64))
        self.event: torch.cuda.Event | None = None
        packed = torch.cat(flat, dim=1) if flat else torch.zeros(len(index), 0, dtype=torch.float64)
        if packed.device.type == "cuda":
            host = torch.empty(packed.shape, dtype=torch.float64, pin_memory=True)
            host.copy_(packed, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
            packed = host
        self.host = packed

    def resolve(self, sinks: _Sinks, tap_sink: TapSink | None) -> None:
        """Wait for the copy, unpack each array to its dtype and shape, and hand it on."""
        if self.event is not None:
            self.event.synchronize()
        table = self.host.numpy()
        by_key: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        col = 0
        for key, name, dtype, shape, cols in self.layout:
            values = table[:, col : col + cols].reshape(len(self.index), *shape)
            by_key.setdefault(key, {})[name] = values.astype(_NUMPY_DTYPES[dtype])
            col += cols
        for key, arrays in by_key.items():
            taps = {k[4:]: arrays.pop(k) for k in list(arrays) if k.startswith("tap:")}
            if "logits" in arrays:
                sinks.chunks(LOGITS, key).add(index=self.index, values=arrays.pop("logits"))
            if "features" in arrays:
                sinks.chunks(FEATURES, key).add(index=self.index, values=arrays.pop("features"))
            if arrays:
                sinks.chunks(PER_IMAGE, key).add(index=self.index, **arrays)
            if taps:
                if tap_sink is not None:
                    tap_sink(key[0], self.index, taps)
                else:
                    sinks.chunks(TAPS, key).add(index=self.index, **taps)


_NUMPY_DTYPES = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.float32,
    torch.bfloat16: np.float32,
    torch.int64: np.int64,
    torch.int32: np.int64,
    torch.bool: np.bool_,
}


@dataclass
class _Sinks:
    """Where a pass's outputs accumulate, per (model, view) and channel."""

    per_image: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    features: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    taps: dict[tuple[str, str], _Chunks] = field(default_factory=dict)
    logits: dict[tuple[str, str], _Chunks] = field(default_factory=dict)

    def chunks(self, channel: str, key: tuple[str, str]) -> _Chunks:
        return getattr(self, channel).setdefault(key, _Chunks())


@dataclass(frozen=True)
class _PassSpec:
    """What one pass computes for each batch (fixed for the whole pass)."""

    prepared: dict[str, _Prepared]
    views: dict[str, Sequence[View]]
    settings: RunSettings
    channels: frozenset[str]
    rule: DecisionRule | None
    subset: ClassSubset | None
    temperatures: dict[str, float]


def _device_images(batch: Sequence[Decoded], device: str) -> list[tuple[Decoded, torch.Tensor]]:
    """The batch's images on the device (decoded there where they arrived encoded; an image
    the device decoder refuses is decoded by PIL), each with its item; failures dropped."""
    encoded = [d for d in batch if d.image is None and d.encoded is not None]
    decoded = dict(
        zip(
            (id(d) for d in encoded),
            decode_on_device([d.encoded for d in encoded], device),  # type: ignore[misc]
            strict=True,
        )
    )
    out = []
    for d in batch:
        if d.image is not None:
            out.append((d, d.image.to(device, non_blocking=True)))
        elif id(d) in decoded:
            img = decoded[id(d)]
            if isinstance(img, str):  # the device decoder refused it: PIL decides
                img = pil_to_tensor(load_rgb(_bytes_io(d.encoded))).to(device)  # type: ignore[arg-type]
            out.append((d, img.to(device)))
    return out


def _bytes_io(data: torch.Tensor) -> object:
    import io

    return io.BytesIO(data.numpy().tobytes())


def _run_batch(
    batch: Sequence[Decoded], labels_all: torch.Tensor, spec: _PassSpec
) -> _Pending | None:
    """Queue every model and view on one batch; returns its outputs on their way to the
    host (``None`` for a batch without a decodable image)."""
    settings = spec.settings
    items = sorted(
        _device_images(batch, settings.device), key=lambda di: tuple(di[1].shape)
    )  # stable: same-size images contiguous, batch order kept within a size
    if not items:
        return None
    index = np.array([d.index for d, _ in items])
    labels = labels_all[torch.from_numpy(index)]
    labels = (labels.pin_memory() if settings.cuda else labels).to(
        settings.device, non_blocking=True
    )
    inputs = _Inputs([img for _, img in items], settings.cuda)
    parts = []
    views = list(dict.fromkeys(v for name in spec.prepared for v in spec.views[name]))
    for v in views:  # view by view: only one view's inputs are on the device at a time
        for name, p in spec.prepared.items():
            if v not in spec.views[name]:
                continue
            compute = functools.partial(
                _outputs_of,
                p,
                settings=settings,
                channels=spec.channels,
                standard=v.name == STANDARD.name,
                scoring=(spec.rule, spec.subset, spec.temperatures.get(name)),
            )
            x = inputs.get(v, p.model.preprocessing)
            parts.append(((name, v.name), _split_on_oom(compute, x, labels)))
        inputs.release()
    return _Pending(index, parts)


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
    decoder: DecodeWorkers | None = None,
) -> PassResult:
    """Decode the samples of one ``shard`` of ``found`` once and evaluate all ``models`` x
    their views, producing the requested ``channels`` (see the module docstring).

    ``views`` maps model name -> views (default: ``standard`` only); ``taps`` maps model
    name -> tap names for the ``taps`` channel (``tokens``: how transformer taps pool).
    With ``tap_sink`` each batch's pooled taps go to it (``sink(model, index, taps)``, the
    models in order, every batch) instead of being kept: a streaming consumer (CKA) then
    never holds the activations of all images. ``temperatures`` maps model name -> the
    temperature its ``standard`` view is also scored at (the ``*_ts`` outputs). ``decoder``:
    decode workers that outlive this pass (made for it when not given). Undecodable images
    are skipped and returned in ``failed`` as (sample_id, error).
    """
    chans = frozenset(channels)
    unknown = chans - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown channel(s) {sorted(unknown)}; known: {', '.join(CHANNELS)}")
    apply_tf32_policy(settings.tf32)
    views = views or {m.name: [STANDARD] for m in models}
    protocol_subset = found.spec.protocol.class_subset
    subset = ClassSubset.of(protocol_subset(), settings.device) if protocol_subset else None
    prepared = {m.name: _prepare(m, settings) for m in models}
    if TAPS in chans:
        for name, names in (taps or {}).items():
            prepared[name].watch(names, tokens)
    spec = _PassSpec(prepared, views, settings, chans, rule, subset, dict(temperatures or {}))
    positions = shard.positions(len(found.samples), settings.batch_size)
    labels_all = torch.tensor([s.label for s in found.samples], dtype=torch.long)
    failed: list[tuple[str, str]] = []
    sinks = _Sinks()
    start = time.perf_counter()
    desc = found.spec.name + (f" [shard {shard.index}/{shard.count}]" if shard.count > 1 else "")
    bar = tqdm(total=len(positions), desc=desc, unit="img", disable=not settings.progress)
    pending: _Pending | None = None
    try:
        with torch.inference_mode(), bar, _batches(found, positions, settings, decoder) as loader:
            for batch in loader:
                failed += [
                    (found.samples[d.index].sample_id, d.error or "") for d in batch if not d.ok
                ]
                queued = _run_batch([d for d in batch if d.ok], labels_all, spec)
                if pending is not None:  # batch k's results, read while batch k + 1 runs
                    pending.resolve(sinks, tap_sink)
                pending = queued
                bar.update(len(batch))
            if pending is not None:
                pending.resolve(sinks, tap_sink)
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


class _batches:
    """The decoded batches of a pass: from the run's persistent ``decoder`` when the
    dataset is plain files, else from a loader made for this pass (closed on exit)."""

    def __init__(
        self,
        found: FoundDataset,
        positions: list[int],
        settings: RunSettings,
        decoder: DecodeWorkers | None,
    ) -> None:
        self.own: DecodeWorkers | None = None
        if found.reader is None:
            if decoder is None or decoder.batch_size != settings.batch_size:
                decoder = self.own = DecodeWorkers(
                    settings.workers, settings.batch_size, settings.cuda, settings.decode
                )
            keys = [(i, str(found.samples[i].path)) for i in positions]
            self.iterator: Iterator[DecodedBatch] = decoder.batches(keys)
        else:
            self.iterator = iter(
                torch.utils.data.DataLoader(
                    DecodedImages(found.samples, positions, found.reader),
                    batch_size=settings.batch_size,
                    num_workers=settings.workers,
                    collate_fn=collate_decoded,
                    pin_memory=settings.cuda,
                )
            )

    def __enter__(self) -> Iterator[DecodedBatch]:
        return self.iterator

    def __exit__(self, *exc: object) -> None:
        if self.own is not None:
            self.own.close()
