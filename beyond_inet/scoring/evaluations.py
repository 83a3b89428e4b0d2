"""Evaluations: from one view's per-image records (or all views of a run) to metric rows.

Each evaluation is registered by name with the output channels of the engine it needs;
a dataset's protocol lists the ones that apply to it. Evaluations only compose the pure
functions of :mod:`beyond_inet.scoring.metrics` — the functions the oracle tests check —
and add 95% percentile bootstrap intervals (one bootstrap for every metric:
:func:`~beyond_inet.scoring.metrics.bootstrap_intervals`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_inet.reference import IMAGENET_X_FACTORS, real_labels
from beyond_inet.registry import Registry
from beyond_inet.run.records import ImageRecords, MetricRow
from beyond_inet.scoring import metrics as M
from beyond_inet.scoring.probe import mean_per_class_accuracy
from beyond_inet.settings import DEFAULT_BOOTSTRAP

#: The engine's output channel every evaluation here reads.
PER_IMAGE = "per_image"


@dataclass(frozen=True)
class ScoringOptions:
    """Bootstrap resamples (0 disables intervals) and seed."""

    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0


@dataclass(frozen=True)
class Evaluation:
    """A per-view evaluation and the engine output channels it needs."""

    compute: Callable[[ImageRecords, ScoringOptions], list[MetricRow]]
    needs: frozenset[str] = frozenset({PER_IMAGE})

    def __call__(self, rec: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
        """The evaluation's rows for one view's records."""
        return self.compute(rec, opts)


@dataclass(frozen=True)
class RunEvaluation:
    """An evaluation over every view of a run at once (``views``: view name -> records);
    it returns (view, row) pairs."""

    compute: Callable[[dict[str, ImageRecords], ScoringOptions], list[tuple[str, MetricRow]]]
    needs: frozenset[str] = frozenset({PER_IMAGE})

    def __call__(
        self, views: dict[str, ImageRecords], opts: ScoringOptions
    ) -> list[tuple[str, MetricRow]]:
        """The evaluation's (view, row) pairs for a run's records."""
        return self.compute(views, opts)


EVALUATIONS: Registry[Evaluation] = Registry("evaluation")
RUN_EVALUATIONS: Registry[RunEvaluation] = Registry("run evaluation")


def channels_for(evaluations: Sequence[str], run_evaluations: Sequence[str]) -> frozenset[str]:
    """The engine output channels a dataset's evaluations need."""
    needs = {n for e in evaluations for n in EVALUATIONS.get(e).needs}
    return frozenset(needs | {n for e in run_evaluations for n in RUN_EVALUATIONS.get(e).needs})


# --------------------------------------------------------------------------- intervals


def _with_ci(
    name: str,
    stat: Callable[..., float],
    arrays: tuple[np.ndarray, ...],
    opts: ScoringOptions,
    vectorized: bool = False,
) -> MetricRow:
    """``stat(*arrays)`` with its percentile bootstrap interval."""
    value = float(stat(*arrays))
    if opts.n_boot <= 0 or len(arrays[0]) == 0:
        return MetricRow(name, value)
    lo, hi = M.bootstrap_ci(
        stat, *arrays, n_boot=opts.n_boot, seed=opts.seed, vectorized=vectorized
    )
    return MetricRow(name, value, lo, hi)


def _mean_ci(name: str, values: np.ndarray, opts: ScoringOptions) -> MetricRow:
    """The mean of per-image values (:func:`beyond_inet.scoring.metrics.mean`), with CI."""
    return _with_ci(name, M.mean, (np.asarray(values, dtype=np.float64),), opts, True)


def _labelled(p: ImageRecords) -> np.ndarray:
    return p.label >= 0


# --------------------------------------------------------------------------- per view


def accuracy(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1``, ``top5`` (fractions; not for tasks of fewer than 5 classes) and
    ``p_true_mean`` over labelled images."""
    m = _labelled(p)
    top5 = (
        []
        if p.topk_idx.ndim < 2 or p.topk_idx.shape[1] < 5
        else [_mean_ci("top5", M.topk_hits(p.topk_idx[m], p.label[m], 5), opts)]
    )
    return [
        _mean_ci("top1", p.correct[m], opts),
        *top5,
        _mean_ci("p_true_mean", p.p_true[m], opts),
    ]


def _calibration_rows(
    conf: np.ndarray,
    corr: np.ndarray,
    p_true: np.ndarray,
    brier: np.ndarray,
    opts: ScoringOptions,
    suffix: str = "",
) -> list[MetricRow]:
    return [
        _with_ci(
            "ece" + suffix,
            lambda c, k: M.expected_calibration_error(c, k, 15),
            (conf, corr),
            opts,
            True,
        ),
        _with_ci(
            "mce" + suffix,
            lambda c, k: M.max_calibration_error(c, k, 15),
            (conf, corr),
            opts,
            True,
        ),
        _with_ci("nll" + suffix, M.negative_log_likelihood, (p_true,), opts, True),
        _with_ci("brier" + suffix, M.brier_score, (brier,), opts, True),
    ]


def calibration(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``ece``, ``mce`` (15 equal-width bins on max-softmax), ``nll`` and ``brier``; and,
    where the records hold them (temperature scaling), the same after scaling: ``ece_ts``,
    ``mce_ts``, ``nll_ts``, ``brier_ts``."""
    m = _labelled(p)
    corr = p.correct[m].astype(np.float64)

    def col(a: np.ndarray) -> np.ndarray:
        return a[m].astype(np.float64)

    rows = _calibration_rows(col(p.confidence), corr, col(p.p_true), col(p.brier), opts)
    if p.confidence_ts is not None and p.p_true_ts is not None and p.brier_ts is not None:
        rows += _calibration_rows(
            col(p.confidence_ts), corr, col(p.p_true_ts), col(p.brier_ts), opts, "_ts"
        )
    return rows


def imagenet_x(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """ImageNet-X (top-factor annotations, prototypes filtered): per factor accuracy,
    error ratio, image count; plus ``error_ratio_mean`` and ``imagenet_x_images``."""
    aligned = M.align_imagenet_x(p.sample_id)
    if len(aligned.rows) == 0:
        return []
    correct = (p.pred[aligned.rows] == aligned.labels).astype(np.float64)
    f = aligned.factors
    value = M.imagenet_x_statistics(correct, f)
    lo = hi = np.full(value.shape, np.nan)
    if opts.n_boot > 0:
        lo, hi = M.bootstrap_intervals(
            M.imagenet_x_statistics, correct, f, n_boot=opts.n_boot, seed=opts.seed, vectorized=True
        )
    n = len(IMAGENET_X_FACTORS)
    rows = [MetricRow("imagenet_x_images", float(len(correct)))]
    for j, k in enumerate(IMAGENET_X_FACTORS):
        rows.append(MetricRow(f"factor_accuracy:{k}", float(value[j]), lo[j], hi[j]))
        rows.append(MetricRow(f"error_ratio:{k}", float(value[n + j]), lo[n + j], hi[n + j]))
        rows.append(MetricRow(f"factor_count:{k}", float(f[:, j].sum())))
    rows.append(MetricRow("error_ratio_mean", float(value[-1]), lo[-1], hi[-1]))
    return rows


#: The shape-bias summaries that get a bootstrap interval (one bootstrap for all four).
SHAPE_BIAS_INTERVALS = ("shape_bias", "shape_accuracy", "texture_accuracy", "accuracy_all_images")


def shape_bias(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """Geirhos shape bias (overall with CI, per category), shape and texture accuracy."""
    from beyond_inet.datasets.cue_conflict import parse_stimulus_name

    if p.decision is None:
        return []
    parsed = [parse_stimulus_name(s) for s in p.sample_id]
    shapes = np.array([s for s, _ in parsed])
    textures = np.array([t for _, t in parsed])
    result = M.shape_bias(p.decision, shapes, textures)
    lo = hi = np.full(len(SHAPE_BIAS_INTERVALS), np.nan)
    if opts.n_boot > 0 and len(shapes):

        def summaries(d: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
            r = M.shape_bias(d, s, t)
            return np.array([r[k] for k in SHAPE_BIAS_INTERVALS])

        lo, hi = M.bootstrap_intervals(
            summaries, p.decision, shapes, textures, n_boot=opts.n_boot, seed=opts.seed
        )
    ci = {k: (lo[i], hi[i]) for i, k in enumerate(SHAPE_BIAS_INTERVALS)}
    return [
        MetricRow(name, float(value), *ci.get(name, (np.nan, np.nan)))
        for name, value in result.items()
    ]


def accuracy_1000way(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_1000way``: accuracy of the plain 1000-way argmax (datasets with a class subset,
    whose ``top1`` is over the subset's logits)."""
    if p.pred_full is None:
        return []
    m = _labelled(p)
    return [_mean_ci("top1_1000way", p.pred_full[m] == p.label[m], opts)]


def real(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_real``: top-1 against the ImageNet-ReaL labels (prediction in the image's ReaL
    set), over val images that have ReaL labels; ``real_images`` counts them."""
    table = real_labels()
    sets = [table.get(str(s).rsplit("/", 1)[-1], ()) for s in p.sample_id]
    keep = np.array([bool(s) for s in sets], dtype=bool)
    if not keep.any():
        return []
    hit = np.array(
        [int(pred) in s for pred, s, k in zip(p.pred, sets, keep, strict=True) if k],
        dtype=np.float64,
    )
    return [_mean_ci("top1_real", hit, opts), MetricRow("real_images", float(keep.sum()))]


def sorted_values(values: Sequence[str]) -> list[str]:
    """Factor values in numeric order when they all parse as numbers, else text order."""
    uniq = sorted(set(values))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def factor_values(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_at:<value>`` for each per-image factor value (PUG-ImageNet factor levels,
    ImageNet-Hard origins), values in numeric order where they are numbers."""
    if p.factor_value is None:
        return []
    known = np.asarray(pd.notna(p.factor_value), dtype=bool) & _labelled(p)
    values = p.factor_value.astype(object)
    return [
        _mean_ci(f"top1_at:{v}", p.correct[known & (values == v)], opts)
        for v in sorted_values([str(x) for x in values[known]])
    ]


def per_class(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``mean_per_class``: the mean over classes of each class's top-1 (transfer tasks
    that report it: Pets, Flowers102, Caltech101)."""
    m = _labelled(p)
    return [
        _with_ci(
            "mean_per_class",
            mean_per_class_accuracy,
            (p.pred[m], p.label[m]),
            opts,
        )
    ]


for _name, _fn in (
    ("accuracy", accuracy),
    ("per_class", per_class),
    ("calibration", calibration),
    ("imagenet_x", imagenet_x),
    ("shape_bias", shape_bias),
    ("accuracy_1000way", accuracy_1000way),
    ("real", real),
    ("factor_values", factor_values),
):
    EVALUATIONS.add(_name, Evaluation(_fn))


def score_view(
    p: ImageRecords, evaluations: Sequence[str], opts: ScoringOptions
) -> list[MetricRow]:
    """Run every named evaluation on one view's records."""
    rows: list[MetricRow] = []
    for name in evaluations:
        rows += EVALUATIONS.get(name).compute(p, opts)
    return rows


# --------------------------------------------------------------------------- run level

#: The view every other view of a run is compared with by ``agreement``.
REFERENCE_VIEW = "standard"


def prediction_agreement(reference: ImageRecords, other: ImageRecords) -> np.ndarray:
    """Per image of ``other`` that ``reference`` also has (joined by sample id, in
    ``other``'s order): 1.0 where both top-1 classes are equal, else 0.0."""
    ref_ids = pd.Index(reference.sample_id)
    if not ref_ids.is_unique:
        raise ValueError("agreement needs unique sample ids in the reference view")
    pos = ref_ids.get_indexer(pd.Index(other.sample_id))
    has = pos >= 0
    return (other.pred[has] == reference.pred[pos[has]]).astype(np.float64)


def agreement(views: dict[str, ImageRecords], opts: ScoringOptions) -> list[tuple[str, MetricRow]]:
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


def imagenet_c(views: dict[str, ImageRecords], opts: ScoringOptions) -> list[tuple[str, MetricRow]]:
    """ImageNet-C summaries from the ``<corruption>:<severity>`` views: per corruption view
    ``<corruption>`` its ``top1`` (mean over severities) and, for the 15 benchmark
    corruptions (those with an AlexNet baseline), ``ce`` (AlexNet-normalised corruption
    error). View ``standard``: ``top1`` (mean over the benchmark corruptions' views only),
    ``mean_ce`` (their mean CE, the mCE), ``corruptions`` (how many benchmark corruptions were
    present) and, when any of the 4 extra corruptions is present, ``top1_extra`` (mean over
    their views) and ``extra_corruptions``."""
    from beyond_inet.datasets.imagenet_c import (
        corruption_errors,
        mean_corruption_error,
        parse_imagenet_c_view,
    )
    from beyond_inet.reference import alexnet_imagenet_c_errors

    acc: dict[str, dict[int, float]] = {}
    for name, vp in views.items():
        parsed = parse_imagenet_c_view(name)
        m = _labelled(vp)
        if parsed is not None and m.any():
            acc.setdefault(parsed[0], {})[parsed[1]] = M.mean(vp.correct[m])
    if not acc:
        return []
    rows = [(c, MetricRow("top1", float(np.mean(list(by.values()))))) for c, by in acc.items()]
    ce = corruption_errors({c: {s: 1.0 - a for s, a in by.items()} for c, by in acc.items()})
    rows += [(c, MetricRow("ce", v)) for c, v in ce.items()]
    benchmark = set(alexnet_imagenet_c_errors())
    bench = [a for c, by in acc.items() if c in benchmark for a in by.values()]
    extra = [a for c, by in acc.items() if c not in benchmark for a in by.values()]
    if bench:
        rows.append(("standard", MetricRow("top1", float(np.mean(bench)))))
        rows.append(("standard", MetricRow("mean_ce", mean_corruption_error(ce))))
        rows.append(("standard", MetricRow("corruptions", float(len(ce)))))
    if extra:
        rows.append(("standard", MetricRow("top1_extra", float(np.mean(extra)))))
        n_extra = len([c for c in acc if c not in benchmark])
        rows.append(("standard", MetricRow("extra_corruptions", float(n_extra))))
    return rows


RUN_EVALUATIONS.add("agreement", RunEvaluation(agreement))
RUN_EVALUATIONS.add("imagenet_c", RunEvaluation(imagenet_c))


def score_run(
    views: dict[str, ImageRecords], evaluations: Sequence[str], opts: ScoringOptions
) -> list[tuple[str, MetricRow]]:
    """Run every named run-level evaluation."""
    rows: list[tuple[str, MetricRow]] = []
    for name in evaluations:
        rows += RUN_EVALUATIONS.get(name).compute(views, opts)
    return rows
