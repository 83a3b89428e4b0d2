"""Evaluations: from one view's per-image records (or all views of a run) to metric rows.

Each evaluation is registered by name with the output channels of the engine it needs;
a dataset's protocol lists the ones that apply to it. Evaluations only compose the pure
functions of :mod:`beyond_inet.scoring.metrics` — the functions the oracle tests check —
and add 95% BCa bootstrap intervals (the debiased RMS calibration error has its own).
Every interval of a view comes from ONE resample matrix
(:func:`~beyond_inet.scoring.metrics.resample_counts`, shared by every view and model of the
same image count): each metric is a function of per-image column sums, so its
replicates are ``finish(counts @ design)`` — one matrix product, on the GPU when there is one.
Point estimates are the metric functions' own values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_inet.records import ImageRecords, MetricRow
from beyond_inet.reference import IMAGENET_X_FACTORS, real_labels
from beyond_inet.registry import Registry
from beyond_inet.scoring import metrics as M
from beyond_inet.scoring.probe import mean_per_class_accuracy
from beyond_inet.settings import DEFAULT_BOOTSTRAP

#: The engine's output channel every evaluation here reads.
PER_IMAGE = "per_image"


@dataclass(frozen=True)
class ScoringOptions:
    """Bootstrap resamples (0 disables intervals), seed, and the device the resample sums
    run on (the run's: ``cuda`` scores on the GPU)."""

    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    device: str = "cpu"


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


Finish = Callable[[np.ndarray], np.ndarray]


def _intervals(
    design: np.ndarray, finish: Finish, opts: ScoringOptions
) -> tuple[np.ndarray, np.ndarray] | None:
    """BCa intervals (:func:`~beyond_inet.scoring.metrics.bca_interval`) of
    ``finish(column sums)`` [..., K] from the view's bootstrap resamples of the rows of
    ``design`` [N, C] and its leave-one-out sums (the jackknife, for the acceleration);
    ``None`` without resamples or images."""
    if opts.n_boot <= 0 or len(design) == 0:
        return None
    reps = finish(M.resample_sums(design, opts.n_boot, opts.seed, opts.device))
    total = np.asarray(design, dtype=np.float64).sum(axis=0)
    estimate = finish(total[None, :]).reshape(-1)
    jackknife = finish(total[None, :] - design).reshape(len(design), -1)
    return M.bca_interval(reps.reshape(opts.n_boot, -1), estimate, jackknife)


def _ratio(sums: np.ndarray) -> np.ndarray:
    """Every column but the last over the last (a masked mean: values * mask, mask)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[:, :-1] / sums[:, -1:]


def _means(
    names: Sequence[str], columns: Sequence[np.ndarray], mask: np.ndarray, opts: ScoringOptions
) -> list[MetricRow]:
    """The mean of each per-image column over the images in ``mask``
    (:func:`beyond_inet.scoring.metrics.mean`), each with its interval from the view's
    resamples (the masked mean ``sum(values * mask) / sum(mask)`` per resample)."""
    m = np.asarray(mask, dtype=bool)
    values = [np.asarray(c, dtype=np.float64) for c in columns]
    rows = [MetricRow(n, float(M.mean(v[m]))) for n, v in zip(names, values, strict=True)]
    design = np.stack([np.where(m, v, 0.0) for v in values] + [m.astype(np.float64)], axis=1)
    ci = _intervals(design, _ratio, opts)
    if ci is None:
        return rows
    return [MetricRow(r.metric, r.value, lo, hi) for r, lo, hi in zip(rows, *ci, strict=True)]


def _mean_ci(name: str, values: np.ndarray, opts: ScoringOptions) -> MetricRow:
    """The mean of per-image values with its interval (all images)."""
    return _means([name], [values], np.ones(len(values), bool), opts)[0]


def _labelled(p: ImageRecords) -> np.ndarray:
    return p.label >= 0


# --------------------------------------------------------------------------- per view


def accuracy(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1``, ``top5`` (fractions; not for tasks of fewer than 5 classes) and
    ``p_true_mean`` over labelled images."""
    m = _labelled(p)
    names, cols = ["top1"], [p.correct]
    if p.topk_idx.ndim == 2 and p.topk_idx.shape[1] >= 5:
        names.append("top5")
        cols.append(M.topk_hits(p.topk_idx, np.where(m, p.label, -1), 5))
    return _means([*names, "p_true_mean"], [*cols, np.nan_to_num(p.p_true)], m, opts)


def _calibration_set(
    conf: np.ndarray,
    corr: np.ndarray,
    p_true: np.ndarray,
    brier: np.ndarray,
    opts: ScoringOptions,
    suffix: str = "",
) -> list[MetricRow]:
    """ECE and MCE (15 bins, plug-in, no interval: binned ECE is biased upwards and a
    bootstrap of it does not cover the true value), the debiased RMS calibration error with
    its interval, and NLL and Brier with BCa intervals, of labelled images' arrays."""
    rows = [
        MetricRow("ece" + suffix, float(M.expected_calibration_error(conf, corr, 15))),
        MetricRow("mce" + suffix, float(M.max_calibration_error(conf, corr, 15))),
    ]
    rms = M.rms_calibration_error(conf, corr, 15, max(opts.n_boot, 0), opts.seed)
    rows.append(MetricRow("rmsce" + suffix, rms.value, rms.low, rms.high))
    nll_row, brier_row = _means(
        ["nll" + suffix, "brier" + suffix],
        [-np.log(np.clip(p_true, 1e-12, None)), brier],
        np.ones(len(conf), bool),
        opts,
    )
    nll = float(M.negative_log_likelihood(p_true))
    return [
        *rows,
        MetricRow(nll_row.metric, nll, nll_row.ci_low, nll_row.ci_high),
        MetricRow(
            brier_row.metric, float(M.brier_score(brier)), brier_row.ci_low, brier_row.ci_high
        ),
    ]


def calibration(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``ece``, ``mce`` (15 equal-width bins on max-softmax), ``nll`` and ``brier``; and,
    where the records hold them (temperature scaling), the same after scaling: ``ece_ts``,
    ``mce_ts``, ``nll_ts``, ``brier_ts``."""
    m = _labelled(p)
    corr = p.correct[m].astype(np.float64)

    def col(a: np.ndarray) -> np.ndarray:
        return a[m].astype(np.float64)

    rows = _calibration_set(col(p.confidence), corr, col(p.p_true), col(p.brier), opts)
    if p.confidence_ts is not None and p.p_true_ts is not None and p.brier_ts is not None:
        rows += _calibration_set(
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
    design = np.zeros((len(p), 2 * len(IMAGENET_X_FACTORS) + 2))  # the view's rows
    design[aligned.rows] = M.imagenet_x_design(correct, f)
    ci = _intervals(design, M.imagenet_x_statistics_from_sums, opts)
    lo, hi = ci if ci is not None else (np.full(value.shape, np.nan),) * 2
    n = len(IMAGENET_X_FACTORS)
    rows = [MetricRow("imagenet_x_images", float(len(correct)))]
    for j, k in enumerate(IMAGENET_X_FACTORS):
        rows.append(MetricRow(f"factor_accuracy:{k}", float(value[j]), lo[j], hi[j]))
        rows.append(MetricRow(f"error_ratio:{k}", float(value[n + j]), lo[n + j], hi[n + j]))
        rows.append(MetricRow(f"factor_count:{k}", float(f[:, j].sum())))
    rows.append(MetricRow("error_ratio_mean", float(value[-1]), lo[-1], hi[-1]))
    return rows


def shape_bias(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """Geirhos shape bias (overall with CI, per category), shape and texture accuracy."""
    from beyond_inet.datasets.cue_conflict import parse_stimulus_name

    if p.decision is None:
        return []
    parsed = [parse_stimulus_name(s) for s in p.sample_id]
    shapes = np.array([s for s, _ in parsed])
    textures = np.array([t for _, t in parsed])
    result = M.shape_bias(p.decision, shapes, textures)
    design = M.shape_bias_design(p.decision, shapes, textures)
    ci = _intervals(design, M.shape_bias_from_sums, opts)
    bounds = {
        k: (ci[0][i], ci[1][i]) if ci is not None else (np.nan, np.nan)
        for i, k in enumerate(M.SHAPE_BIAS_SUMMARIES)
    }
    return [
        MetricRow(name, float(value), *bounds.get(name, (np.nan, np.nan)))
        for name, value in result.items()
    ]


def accuracy_1000way(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_1000way``: accuracy of the plain 1000-way argmax (datasets with a class subset,
    whose ``top1`` is over the subset's logits)."""
    if p.pred_full is None:
        return []
    return _means(["top1_1000way"], [p.pred_full == p.label], _labelled(p), opts)


def real(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``top1_real``: top-1 against the ImageNet-ReaL labels (prediction in the image's ReaL
    set), over val images that have ReaL labels; ``real_images`` counts them."""
    table = real_labels()
    sets = [table.get(str(s).rsplit("/", 1)[-1], ()) for s in p.sample_id]
    keep = np.array([bool(s) for s in sets], dtype=bool)
    if not keep.any():
        return []
    hit = np.array([int(pred) in s for pred, s in zip(p.pred, sets, strict=True)], np.float64)
    return [*_means(["top1_real"], [hit], keep, opts), MetricRow("real_images", float(keep.sum()))]


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
    values = np.array([str(x) for x in p.factor_value], dtype=object)
    return [
        row
        for v in sorted_values(list(values[known]))
        for row in _means([f"top1_at:{v}"], [p.correct], known & (values == v), opts)
    ]


def per_class(p: ImageRecords, opts: ScoringOptions) -> list[MetricRow]:
    """``mean_per_class``: the mean over classes of each class's top-1 (transfer tasks
    that report it: Pets, Flowers102, Caltech101)."""
    m = _labelled(p)
    pred, label = p.pred[m], p.label[m]
    value = mean_per_class_accuracy(pred, label)
    classes = np.unique(label)
    member = (label[:, None] == classes[None, :]).astype(np.float64)  # [N, classes]
    design = np.concatenate([member * (pred == label)[:, None], member], axis=1)

    def finish(sums: np.ndarray) -> np.ndarray:
        k = len(classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = sums[:, :k] / np.where(sums[:, k:] > 0, sums[:, k:], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample without any class
            return np.nanmean(per_class, axis=1)

    ci = _intervals(design, finish, opts)
    return [MetricRow("mean_per_class", value, *(c[0] for c in ci) if ci else ())]


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


def imagenet_c_summary(acc: dict[str, dict[int, float]]) -> list[tuple[str, MetricRow]]:
    """ImageNet-C summaries from top-1 accuracies by corruption and severity (``{corruption:
    {severity: top1}}``): per corruption view ``<corruption>`` its ``top1`` (mean over
    severities) and, for the 15 benchmark corruptions (those with an AlexNet baseline),
    ``ce`` (AlexNet-normalised corruption error). View ``standard``: ``top1`` (mean over the
    benchmark corruptions' accuracies only), ``mean_ce`` (their mean CE, the mCE),
    ``corruptions`` (how many benchmark corruptions were present) and, when any of the 4
    extra corruptions is present, ``top1_extra`` (mean over them) and ``extra_corruptions``.
    The model catalogue derives published models' ImageNet-C numbers with this too."""
    from beyond_inet.datasets.imagenet_c import corruption_errors, mean_corruption_error
    from beyond_inet.reference import alexnet_imagenet_c_errors

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


def imagenet_c(views: dict[str, ImageRecords], opts: ScoringOptions) -> list[tuple[str, MetricRow]]:
    """ImageNet-C summaries (:func:`imagenet_c_summary`) of the ``<corruption>:<severity>``
    views' top-1 accuracies."""
    from beyond_inet.datasets.imagenet_c import parse_imagenet_c_view

    acc: dict[str, dict[int, float]] = {}
    for name, vp in views.items():
        parsed = parse_imagenet_c_view(name)
        m = _labelled(vp)
        if parsed is not None and m.any():
            acc.setdefault(parsed[0], {})[parsed[1]] = M.mean(vp.correct[m])
    return imagenet_c_summary(acc)


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
