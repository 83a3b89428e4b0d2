"""Scoring: evaluations turn one view's per-image predictions into metric rows.

Each evaluation is registered by name in :data:`EVALUATIONS`; a dataset lists the ones
that apply to it. Evaluations only compose the pure functions of :mod:`beyond_inet.metrics`
and add 95% bootstrap intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from beyond_inet import metrics as M
from beyond_inet.registry import Registry


@dataclass(frozen=True)
class ViewPredictions:
    """One (model, dataset, view)'s per-image outputs as aligned arrays.

    ``labels`` is -1 where an image has no ImageNet label; ``decision`` / ``shapes`` /
    ``textures`` are category names for cue-conflict, else ``None``.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    p_true: np.ndarray
    correct: np.ndarray
    topk_idx: np.ndarray
    topk_prob: np.ndarray
    brier: np.ndarray
    decision: np.ndarray | None = None
    pred_full: np.ndarray | None = None
    #: per-image factor value (PUG-ImageNet, ImageNet-Hard origin; object array, None = none)
    factor_value: np.ndarray | None = None

    def take(self, mask: np.ndarray) -> ViewPredictions:
        """The rows where ``mask`` is true."""
        return ViewPredictions(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask]
                for f in fields(self)
            }
        )


@dataclass(frozen=True)
class MetricRow:
    """A metric value with its 95% interval (NaN where none is computed)."""

    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan


@dataclass(frozen=True)
class ScoringOptions:
    """Bootstrap resamples (0 disables intervals) and seed."""

    n_boot: int = 1000
    seed: int = 0


Evaluation = Callable[[ViewPredictions, ScoringOptions], list[MetricRow]]
EVALUATIONS: Registry[Evaluation] = Registry("evaluation")


def _with_ci(
    name: str,
    stat: Callable[..., float],
    arrays: tuple[np.ndarray, ...],
    opts: ScoringOptions,
    vectorized: bool = False,
) -> MetricRow:
    """``stat(*arrays)`` with its percentile bootstrap interval; ``vectorized`` statistics
    take ``[B, N]`` resamples at once (same draws, much faster)."""
    value = float(stat(*arrays))
    if opts.n_boot <= 0 or len(arrays[0]) == 0:
        return MetricRow(name, value)
    lo, hi = M.bootstrap_ci(
        stat, *arrays, n_boot=opts.n_boot, seed=opts.seed, vectorized=vectorized
    )
    return MetricRow(name, value, float(lo), float(hi))


def _mean_ci(name: str, values: np.ndarray, opts: ScoringOptions) -> MetricRow:
    """The mean of per-image values (:func:`beyond_inet.metrics.mean`) with its interval."""
    return _with_ci(name, M.mean, (values.astype(np.float64),), opts, vectorized=True)


def _labelled(p: ViewPredictions) -> np.ndarray:
    return p.labels >= 0


@EVALUATIONS.register("accuracy")
def accuracy(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """``top1``, ``top5`` (fractions) and ``p_true_mean`` over labelled images."""
    m = _labelled(p)
    hit5 = (p.topk_idx[m, :5] == p.labels[m, None]).any(axis=1).astype(np.float64)
    return [
        _mean_ci("top1", p.correct[m], opts),
        _mean_ci("top5", hit5, opts),
        _mean_ci("p_true_mean", p.p_true[m], opts),
    ]


@EVALUATIONS.register("calibration")
def calibration(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """``ece``, ``mce`` (15 equal-width bins on max-softmax), ``nll`` and ``brier``."""
    m = _labelled(p)
    conf = p.confidence[m].astype(np.float64)
    corr = p.correct[m].astype(np.float64)
    return [
        _with_ci(
            "ece",
            lambda c, k: M.expected_calibration_error(c, k, 15),
            (conf, corr),
            opts,
            vectorized=True,
        ),
        _with_ci(
            "mce",
            lambda c, k: M.max_calibration_error(c, k, 15),
            (conf, corr),
            opts,
            vectorized=True,
        ),
        _with_ci(
            "nll",
            M.negative_log_likelihood,
            (p.p_true[m].astype(np.float64),),
            opts,
            vectorized=True,
        ),
        _with_ci("brier", M.brier_score, (p.brier[m].astype(np.float64),), opts, vectorized=True),
    ]


def bootstrap_counts(n: int, n_boot: int, seed: int, chunk: int = 50) -> Iterator[np.ndarray]:
    """Yield [b, n] resample count matrices (each row sums to n), ``n_boot`` rows in total."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _imagenet_x_stats(weights: np.ndarray, correct: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """[b, 33]: 16 factor accuracies, 16 error ratios, mean ratio for weighted resamples."""
    totals = weights @ factors
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = (weights @ (factors * correct[:, None])) / totals
        avg = (weights @ correct) / weights.sum(axis=1)
        ratio = (1 - acc) / (1 - avg)[:, None]
        mean = np.nanmean(ratio, axis=1, keepdims=True)
    return np.concatenate([acc, ratio, mean], axis=1)


@EVALUATIONS.register("imagenet_x")
def imagenet_x(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """ImageNet-X (top-factor annotations, prototypes filtered): per factor accuracy,
    error ratio, image count; plus ``error_ratio_mean`` and ``imagenet_x_images``."""
    aligned = M.align_imagenet_x(p.sample_ids)
    if len(aligned.rows) == 0:
        return []
    correct = (p.pred[aligned.rows] == aligned.labels).astype(np.float64)
    f = aligned.factors
    value = _imagenet_x_stats(np.ones((1, len(correct))), correct, f)[0]
    lo = hi = np.full(value.shape, np.nan)
    if opts.n_boot > 0:
        boots = np.concatenate(
            [
                _imagenet_x_stats(w, correct, f)
                for w in bootstrap_counts(len(correct), opts.n_boot, opts.seed)
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(boots, [2.5, 97.5], axis=0)
    n = len(M.IMAGENET_X_FACTORS)
    rows = [MetricRow("imagenet_x_images", float(len(correct)))]
    for j, k in enumerate(M.IMAGENET_X_FACTORS):
        rows.append(MetricRow(f"factor_accuracy:{k}", float(value[j]), lo[j], hi[j]))
        rows.append(MetricRow(f"error_ratio:{k}", float(value[n + j]), lo[n + j], hi[n + j]))
        rows.append(MetricRow(f"factor_count:{k}", float(f[:, j].sum())))
    rows.append(MetricRow("error_ratio_mean", float(value[-1]), lo[-1], hi[-1]))
    return rows


@EVALUATIONS.register("shape_bias")
def shape_bias(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """Geirhos shape bias (overall with CI, per category), shape and texture accuracy."""
    from beyond_inet.cue_conflict import parse_stimulus_name

    if p.decision is None:
        return []
    parsed = [parse_stimulus_name(s) for s in p.sample_ids]
    shapes = np.array([s for s, _ in parsed])
    textures = np.array([t for _, t in parsed])
    result = M.shape_bias(p.decision, shapes, textures)
    rows = []
    for name, value in result.items():
        if name in ("shape_bias", "shape_accuracy", "texture_accuracy", "accuracy_all_images"):
            rows.append(
                _with_ci(
                    name,
                    lambda d, s, t, k=name: M.shape_bias(d, s, t)[k],
                    (p.decision, shapes, textures),
                    opts,
                )
            )
        else:
            rows.append(MetricRow(name, float(value)))
    return rows


def score_view(
    p: ViewPredictions, evaluations: tuple[str, ...], opts: ScoringOptions
) -> list[MetricRow]:
    """Run every named evaluation on one view's predictions."""
    rows: list[MetricRow] = []
    for name in evaluations:
        rows += EVALUATIONS.get(name)(p, opts)
    return rows


#: Evaluations over all views of a run at once: ``views`` maps view name -> predictions;
#: they return (view, row) pairs (e.g. agreement with ``standard``, ImageNet-C mCE).
RunEvaluation = Callable[[dict[str, ViewPredictions], ScoringOptions], list[tuple[str, MetricRow]]]
RUN_EVALUATIONS: Registry[RunEvaluation] = Registry("run evaluation")


def score_run(
    views: dict[str, ViewPredictions], evaluations: tuple[str, ...], opts: ScoringOptions
) -> list[tuple[str, MetricRow]]:
    """Run every named run-level evaluation."""
    rows: list[tuple[str, MetricRow]] = []
    for name in evaluations:
        rows += RUN_EVALUATIONS.get(name)(views, opts)
    return rows


#: The view every other view of a run is compared with by ``agreement``.
REFERENCE_VIEW = "standard"


def prediction_agreement(reference: ViewPredictions, other: ViewPredictions) -> np.ndarray:
    """Per image of ``other`` that ``reference`` also has (joined by sample id, in
    ``other``'s order): 1.0 where both top-1 classes are equal, else 0.0."""
    ref_ids = pd.Index(reference.sample_ids)
    if not ref_ids.is_unique:
        raise ValueError("agreement needs unique sample ids in the reference view")
    pos = ref_ids.get_indexer(pd.Index(other.sample_ids))
    has = pos >= 0
    return (other.pred[has] == reference.pred[pos[has]]).astype(np.float64)


@RUN_EVALUATIONS.register("agreement")
def agreement(
    views: dict[str, ViewPredictions], opts: ScoringOptions
) -> list[tuple[str, MetricRow]]:
    """``agreement`` per view: the fraction of images whose top-1 class equals the
    ``standard`` view's for the same image (1.0 for ``standard`` itself), with a 95%
    bootstrap interval. Nothing when the run has no ``standard`` view."""
    reference = views.get(REFERENCE_VIEW)
    if reference is None:
        return []
    rows = []
    for name, vp in views.items():
        same = prediction_agreement(reference, vp)
        if len(same):
            rows.append((name, _mean_ci("agreement", same, opts)))
    return rows


# --------------------------------------------------------------------------------------
# Robustness evaluations (ImageNet-R/-A 1000-way, ImageNet-ReaL, factor values, ImageNet-C)
# --------------------------------------------------------------------------------------


@EVALUATIONS.register("accuracy_1000way")
def accuracy_1000way(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_1000way``: accuracy of the plain 1000-way argmax (datasets with a class subset,
    whose ``top1`` is over the subset's logits)."""
    if p.pred_full is None:
        return []
    m = _labelled(p)
    hit = (p.pred_full[m] == p.labels[m]).astype(np.float64)
    return [_mean_ci("top1_1000way", hit, opts)]


@EVALUATIONS.register("real")
def real(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_real``: top-1 against the ImageNet-ReaL labels (prediction in the image's ReaL
    set), over val images that have ReaL labels; ``real_images`` counts them."""
    from beyond_inet.robustness import real_labels

    table = real_labels()
    sets = [table.get(str(s).rsplit("/", 1)[-1], ()) for s in p.sample_ids]
    keep = np.array([bool(s) for s in sets], dtype=bool)
    if not keep.any():
        return []
    hit = np.array(
        [int(pred) in s for pred, s, k in zip(p.pred, sets, keep, strict=True) if k],
        dtype=np.float64,
    )
    return [_mean_ci("top1_real", hit, opts), MetricRow("real_images", float(keep.sum()))]


@EVALUATIONS.register("factor_values")
def factor_values(p: ViewPredictions, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_at:<value>`` for each per-image factor value (PUG-ImageNet factor levels,
    ImageNet-Hard origins), values in numeric order where they are numbers."""
    from beyond_inet.robustness import sorted_values

    if p.factor_value is None:
        return []
    known = np.array([v is not None and v == v for v in p.factor_value], dtype=bool) & (
        _labelled(p)
    )
    values = p.factor_value.astype(object)
    rows = []
    for v in sorted_values([str(x) for x in values[known]]):
        hit = p.correct[known & (values == v)].astype(np.float64)
        rows.append(_mean_ci(f"top1_at:{v}", hit, opts))
    return rows


@RUN_EVALUATIONS.register("imagenet_c")
def imagenet_c(
    views: dict[str, ViewPredictions], opts: ScoringOptions
) -> list[tuple[str, MetricRow]]:
    """ImageNet-C summaries from the ``<corruption>:<severity>`` views: per corruption view
    ``<corruption>`` its ``top1`` (mean over severities) and, for the 15 benchmark
    corruptions (those with an AlexNet baseline), ``ce`` (AlexNet-normalised corruption
    error). View ``standard``: ``top1`` (mean over the benchmark corruptions' views only),
    ``mean_ce`` (their mean CE, the mCE), ``corruptions`` (how many benchmark corruptions were
    present) and, when any of the 4 extra corruptions is present, ``top1_extra`` (mean over
    their views) and ``extra_corruptions``."""
    from beyond_inet.robustness import (
        alexnet_errors,
        corruption_errors,
        mean_corruption_error,
        parse_imagenet_c_view,
    )

    acc: dict[str, dict[int, float]] = {}
    for name, vp in views.items():
        parsed = parse_imagenet_c_view(name)
        m = _labelled(vp)
        if parsed is not None and m.any():
            acc.setdefault(parsed[0], {})[parsed[1]] = float(vp.correct[m].mean())
    if not acc:
        return []
    rows = [(c, MetricRow("top1", float(np.mean(list(by.values()))))) for c, by in acc.items()]
    ce = corruption_errors({c: {s: 1.0 - a for s, a in by.items()} for c, by in acc.items()})
    rows += [(c, MetricRow("ce", v)) for c, v in ce.items()]
    benchmark = set(alexnet_errors())
    bench = [a for c, by in acc.items() if c in benchmark for a in by.values()]
    extra = [a for c, by in acc.items() if c not in benchmark for a in by.values()]
    if bench:
        rows.append(("standard", MetricRow("top1", float(np.mean(bench)))))
        rows.append(("standard", MetricRow("mean_ce", mean_corruption_error(ce))))
        rows.append(("standard", MetricRow("corruptions", float(len(ce)))))
    if extra:
        rows.append(("standard", MetricRow("top1_extra", float(np.mean(extra)))))
        rows.append(
            (
                "standard",
                MetricRow("extra_corruptions", float(len([c for c in acc if c not in benchmark]))),
            )
        )
    return rows
