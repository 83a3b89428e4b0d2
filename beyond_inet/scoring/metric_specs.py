"""The metric specs: every stored metric's unit, direction and meaning, in one place.

In the style of lm-evaluation-harness's metric specs: each entry has a short label, says how
a metric reads (``unit``: ``percent`` — a 0-1 fraction shown in %; ``probability`` — a 0-1
number shown as a decimal; ``ratio``, ``nats``, ``score``, ``count``), whether higher is
better (``None`` for counts and descriptive numbers), how it summarises the images, and
what it is. Names with an argument (``error_ratio:<factor>``) are looked up by
their prefix. The dashboard reads units and directions from here; the README's metric table
describes the same entries (a test checks every entry is there).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from beyond_inet.reference import CUE_CONFLICT_CATEGORIES, IMAGENET_X_FACTORS
from beyond_inet.registry import Registry, UnknownNameError

#: The OOD detection scores (:mod:`beyond_inet.scoring.ood` reads each from its column).
OOD_SCORES: tuple[str, ...] = ("msp", "max_logit", "energy")


@dataclass(frozen=True)
class MetricSpec:
    """How to read one metric."""

    name: str
    label: str
    unit: str
    higher_is_better: bool | None
    summary: str
    description: str
    #: For a name with an argument (``error_ratio:<factor>``): the arguments it may take;
    #: ``None`` when open (e.g. a PUG factor's values, which are the dataset's own data).
    arguments: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit must be one of {UNITS}, got {self.unit!r}")

    @property
    def percent(self) -> bool:
        """Shown in %."""
        return self.unit == "percent"

    @property
    def title(self) -> str:
        """The label with its unit, for axes and table headers (``top-1 accuracy (%)``)."""
        return f"{self.label} (%)" if self.percent else self.label


UNITS = ("percent", "probability", "ratio", "nats", "score", "count", "img/s", "ms", "MiB")

METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in (
    MetricSpec(
        "top1",
        "top-1 accuracy",
        "percent",
        True,
        "mean over labelled images",
        "top-1 accuracy (the dataset's rule: any acceptable label, or its decision)",
    ),
    MetricSpec("top5", "top-5", "percent", True, "mean over labelled images", "top-5 accuracy"),
    MetricSpec(
        "p_true_mean",
        "true-class probability",
        "probability",
        True,
        "mean over labelled images",
        "mean probability of the true class",
    ),
    MetricSpec(
        "agreement",
        "agreement with the standard view",
        "percent",
        True,
        "mean over images in both views",
        "top-1 equal to the standard view's for the same image",
    ),
    MetricSpec(
        "ece",
        "ECE",
        "probability",
        False,
        "15 equal-width confidence bins",
        "expected calibration error (torchmetrics l1); plug-in, biased upwards, no interval",
    ),
    MetricSpec(
        "mce",
        "MCE",
        "probability",
        False,
        "15 equal-width confidence bins",
        "max calibration error (torchmetrics max): the worst bin, often a sparse one; no interval",
    ),
    MetricSpec(
        "rmsce",
        "RMS calibration error (debiased)",
        "probability",
        False,
        "15 equal-width confidence bins",
        "debiased root-mean-square calibration error (Kumar et al. 2019) with an interval "
        "valid down to a perfectly calibrated model",
    ),
    MetricSpec(
        "nll",
        "NLL",
        "nats",
        False,
        "mean over labelled images",
        "negative log-likelihood of the true class",
    ),
    MetricSpec(
        "brier", "Brier", "score", False, "mean over labelled images", "multiclass Brier score"
    ),
    MetricSpec(
        "ece_ts",
        "ECE after temperature scaling",
        "probability",
        False,
        "15 equal-width confidence bins",
        "ECE of softmax(logits / T), T fitted on ImageNet val (cross-fitted on val itself)",
    ),
    MetricSpec(
        "mce_ts",
        "MCE after temperature scaling",
        "probability",
        False,
        "15 equal-width confidence bins",
        "MCE of softmax(logits / T)",
    ),
    MetricSpec(
        "rmsce_ts",
        "RMS calibration error after temperature scaling",
        "probability",
        False,
        "15 equal-width confidence bins",
        "debiased RMS calibration error of softmax(logits / T)",
    ),
    MetricSpec(
        "nll_ts",
        "NLL after temperature scaling",
        "nats",
        False,
        "mean over labelled images",
        "NLL of softmax(logits / T)",
    ),
    MetricSpec(
        "brier_ts",
        "Brier after temperature scaling",
        "score",
        False,
        "mean over labelled images",
        "Brier score of softmax(logits / T)",
    ),
    MetricSpec(
        "temperature",
        "temperature",
        "ratio",
        None,
        "fitted on all labelled ImageNet val images",
        "the temperature T minimising NLL on ImageNet val; applied to the shift datasets",
    ),
    MetricSpec(
        "temperature_fold:<k>",
        "fold temperature",
        "ratio",
        None,
        "fitted on one half of ImageNet val",
        "the temperature fitted on fold <k> (0, 1), which scores the other fold's images",
        ("0", "1"),
    ),
    MetricSpec(
        "factor_accuracy:<factor>",
        "factor accuracy",
        "percent",
        True,
        "annotated val images",
        "ImageNet-X: accuracy on images whose top factor is <factor>",
        IMAGENET_X_FACTORS,
    ),
    MetricSpec(
        "error_ratio:<factor>",
        "error ratio",
        "ratio",
        False,
        "annotated val images",
        "ImageNet-X: (1 - factor accuracy) / (1 - overall accuracy)",
        IMAGENET_X_FACTORS,
    ),
    MetricSpec(
        "factor_count:<factor>",
        "annotated images",
        "count",
        None,
        "annotated val images",
        "ImageNet-X: images annotated with <factor>",
        IMAGENET_X_FACTORS,
    ),
    MetricSpec(
        "error_ratio_mean",
        "ImageNet-X error ratio",
        "ratio",
        False,
        "mean over the 16 factors",
        "ImageNet-X: mean error ratio",
    ),
    MetricSpec(
        "imagenet_x_images",
        "ImageNet-X images",
        "count",
        None,
        "val images",
        "ImageNet-X annotated images",
    ),
    MetricSpec(
        "shape_bias",
        "shape bias",
        "probability",
        True,
        "non-excluded stimuli",
        "shape decisions / (shape + texture decisions) (humans: 0.96)",
    ),
    MetricSpec(
        "shape_bias:<category>",
        "shape bias",
        "probability",
        None,
        "stimuli of that shape",
        "shape bias per shape category",
        CUE_CONFLICT_CATEGORIES,
    ),
    MetricSpec(
        "shape_accuracy",
        "shape accuracy",
        "percent",
        True,
        "non-excluded stimuli",
        "decision is the shape category",
    ),
    MetricSpec(
        "texture_accuracy",
        "texture accuracy",
        "percent",
        None,
        "non-excluded stimuli",
        "decision is the texture category",
    ),
    MetricSpec(
        "accuracy_all_images",
        "accuracy (all images)",
        "percent",
        True,
        "all stimuli",
        "decision is the shape category, over all 1,280 images",
    ),
    MetricSpec(
        "top1_real",
        "ReaL top-1",
        "percent",
        True,
        "val images with ReaL labels",
        "ImageNet-ReaL top-1",
    ),
    MetricSpec(
        "real_images", "ReaL images", "count", None, "val images", "images with ReaL labels"
    ),
    MetricSpec(
        "top1_1000way",
        "1000-way top-1",
        "percent",
        True,
        "mean over labelled images",
        "plain 1000-way argmax accuracy (R, A)",
    ),
    MetricSpec(
        "ce",
        "CE",
        "ratio",
        False,
        "a corruption's severities",
        "ImageNet-C corruption error, normalised by AlexNet's",
    ),
    MetricSpec(
        "mean_ce",
        "mCE",
        "ratio",
        False,
        "the 15 benchmark corruptions",
        "ImageNet-C mean corruption error (mCE)",
    ),
    MetricSpec(
        "corruptions", "corruptions", "count", None, "ImageNet-C", "benchmark corruptions present"
    ),
    MetricSpec(
        "throughput",
        "throughput",
        "img/s",
        True,
        "timed forwards of random inputs",
        "images per second through the model (--profile; view batch1 or best)",
    ),
    MetricSpec(
        "latency_p50_ms",
        "latency p50",
        "ms",
        False,
        "timed batch-1 forwards",
        "median time of one batch-1 forward (--profile)",
    ),
    MetricSpec(
        "latency_p95_ms",
        "latency p95",
        "ms",
        False,
        "timed batch-1 forwards",
        "95th percentile time of one batch-1 forward (--profile)",
    ),
    MetricSpec(
        "peak_memory_mib",
        "peak memory",
        "MiB",
        False,
        "the batch size's forwards",
        "CUDA: torch's peak allocation; CPU: the process's peak resident set (--profile)",
    ),
    MetricSpec(
        "batch_size",
        "best batch size",
        "count",
        None,
        "the sweep",
        "the batch size with the highest throughput (--profile)",
    ),
    MetricSpec(
        "top1_extra",
        "extra-corruption top-1",
        "percent",
        True,
        "the extra corruptions' views",
        "ImageNet-C top-1 on the 4 extra corruptions",
    ),
    MetricSpec(
        "extra_corruptions",
        "extra corruptions",
        "count",
        None,
        "ImageNet-C",
        "extra corruptions present",
    ),
    MetricSpec(
        "top1_at:<value>",
        "top-1",
        "percent",
        True,
        "images with that factor value",
        "accuracy per factor value (PUG-ImageNet, ImageNet-Hard origin)",
    ),
    MetricSpec(
        "auroc:<score>",
        "OOD AUROC",
        "probability",
        True,
        "the OOD set's images against ImageNet val's",
        "OOD detection: P(an in-distribution image outscores an OOD image) by <score> "
        "(msp, max_logit, energy)",
        OOD_SCORES,
    ),
    MetricSpec(
        "fpr95:<score>",
        "OOD FPR@95%TPR",
        "percent",
        False,
        "the OOD set's images",
        "OOD detection: OOD images scored above the <score> threshold that keeps 95% of "
        "ImageNet val",
        OOD_SCORES,
    ),
    MetricSpec(
        "aupr_in:<score>",
        "OOD AUPR-in",
        "probability",
        True,
        "the OOD set's images against ImageNet val's",
        "OOD detection: area under precision-recall, in-distribution as positive",
        OOD_SCORES,
    ),
    MetricSpec(
        "aupr_out:<score>",
        "OOD AUPR-out",
        "probability",
        True,
        "the OOD set's images against ImageNet val's",
        "OOD detection: area under precision-recall, OOD as positive",
        OOD_SCORES,
    ),
    MetricSpec(
        "ood_reference_images",
        "in-distribution images",
        "count",
        None,
        "the in-distribution run",
        "OOD detection: ImageNet val images the OOD set was scored against",
    ),
    MetricSpec(
        "mean_per_class",
        "mean per-class accuracy",
        "percent",
        True,
        "mean over the test classes",
        "transfer: the mean over classes of each class's linear-probe top-1",
    ),
    MetricSpec(
        "probe_c",
        "probe C",
        "score",
        None,
        "the task's val split",
        "transfer: the inverse L2 regularisation strength chosen on val",
    ),
    MetricSpec("n_train", "train images", "count", None, "the task", "transfer: probe train"),
    MetricSpec("n_val", "val images", "count", None, "the task", "transfer: probe val (C)"),
    MetricSpec("n_test", "test images", "count", None, "the task", "transfer: scored images"),
    # summaries the dashboard derives (in SQL) from the stored metrics
    MetricSpec(
        "top1_average",
        "robustness average",
        "percent",
        True,
        "the paper's 7 robustness benchmarks",
        "mean top-1 over ImageNet-V2, ReaL, Sketch, R, A, C, Hard",
    ),
    MetricSpec(
        "agreement_mean",
        "invariance",
        "percent",
        True,
        "the scale / shift / resolution views",
        "mean agreement with the standard view",
    ),
    MetricSpec(
        "top1_mean",
        "PUG-ImageNet top-1",
        "percent",
        True,
        "the PUG-ImageNet factor subsets",
        "mean top-1 over the factors",
    ),
    MetricSpec(
        "top1_natural",
        "VTAB natural",
        "percent",
        True,
        "the natural tasks present",
        "mean linear-probe top-1 over VTAB's 7 natural tasks",
    ),
    MetricSpec(
        "top1_specialized",
        "VTAB specialized",
        "percent",
        True,
        "the specialized tasks present",
        "mean linear-probe top-1 over VTAB's 4 specialized tasks",
    ),
    MetricSpec(
        "top1_structured",
        "VTAB structured",
        "percent",
        True,
        "the structured tasks present",
        "mean linear-probe top-1 over VTAB's 8 structured tasks",
    ),
    MetricSpec(
        "top1_vtab",
        "VTAB mean",
        "percent",
        True,
        "the VTAB tasks present",
        "mean linear-probe top-1 over the 19 VTAB tasks",
    ),
):
    METRICS.add(_spec.name, _spec)


def spec(metric: str) -> MetricSpec:
    """The entry of a stored metric name (``error_ratio:pose`` -> ``error_ratio:<factor>``);
    unknown names fail with suggestions."""
    if metric in METRICS:
        return METRICS.get(metric)
    prefix, sep, argument = metric.partition(":")
    if sep:
        for name, entry in METRICS.items():
            if name.startswith(f"{prefix}:<"):
                if entry.arguments is not None and argument not in entry.arguments:
                    close = difflib.get_close_matches(argument, entry.arguments, n=3)
                    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                    raise UnknownNameError(
                        f"{metric!r}: {argument!r} is not one of {name}'s arguments "
                        f"({', '.join(entry.arguments)}).{hint}"
                    )
                return entry
    raise UnknownNameError(METRICS.unknown_message(metric))
