"""Synthetic results stores for tests, benchmarks and demos (no models needed).

:func:`fill_store` makes per-image predictions for every dataset and view the tool knows,
then scores and stores them through the production code (the per-image record of
:func:`beyond_inet.records.to_arrow`, the evaluations registered for each dataset,
:meth:`beyond_inet.store.Store.commit_run`), so every number obeys the README's definitions:
a view identical to ``standard`` (``scale:1``, ``resolution:224``) agrees 100% with it, and
agreement falls as a view moves away. Runs are recorded with ``weights='synthetic'`` and
marked like random weights (numbers meaningless) everywhere. ``scale=1.0`` is the full paper
suite (~4.7 M prediction rows per model). With ``write_images`` small generated pictures are
written under ``data_root`` in each dataset's layout, so the Explorer shows images.

    python -m dashboard.synthetic --store demo.duckdb            # + demo-datasets/ images
    streamlit run dashboard/app.py -- --store demo.duckdb --data-root demo-datasets
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from beyond_inet.datasets import DATASETS
from beyond_inet.datasets.cue_conflict import CATEGORIES
from beyond_inet.models import PAPER_MODELS
from beyond_inet.records import ImageRecords, MetricRow, RunRecord, metrics_frame
from beyond_inet.reference import (
    alexnet_imagenet_c_errors,
    imagenet_a_indices,
    imagenet_r_indices,
    imagenet_val_labels,
    imagenet_wnids,
)
from beyond_inet.scoring.evaluations import ScoringOptions, score_run, score_view
from beyond_inet.scoring.temperature import temperature_rows
from beyond_inet.store import Store

INVARIANCE_VIEWS = (
    [f"scale:{s}" for s in (1, 1.25, 1.5, 2, 3)]
    + [f"shift:{n}" for n in (0, 5, 30, 75, 100)]
    + [f"resolution:{r}" for r in (112, 224, 336, 512, 640)]
)
CORRUPTIONS = tuple(alexnet_imagenet_c_errors())  # the 15 benchmark corruptions
PUG_FACTORS = (
    "Worlds",
    "Camera_Pitch",
    "Camera_Yaw",
    "Camera_Roll",
    "Object_Pitch",
    "Object_Yaw",
    "Object_Roll",
    "Object_Scale",
    "Object_Texture",
    "Scene_Light",
)
SYNTHETIC_WEIGHTS = "synthetic"
#: How many images per dataset ``write_images`` writes (per view where each view has its
#: own images: ImageNet-C, PUG-ImageNet).
IMAGES_PER_VIEW = (120, 24)
BASE_ACCURACY = {
    "imagenet-val": 0.84,
    "imagenet-c": 0.6,
    "imagenet-v2": 0.75,
    "imagenet-sketch": 0.47,
    "imagenet-r": 0.62,
    "imagenet-a": 0.55,
    "imagenet-hard": 0.29,
    "cue-conflict": 0.3,
    "pug-imagenet": 0.4,
    # OOD sets: how often an image looks like a confident in-distribution one
    "ood-ssb-hard": 0.55,
    "ood-ninco": 0.5,
    "ood-inaturalist": 0.25,
    "ood-textures": 0.35,
    "ood-openimage-o": 0.3,
    "imagenet-o": 0.6,
}


@dataclass(frozen=True)
class SyntheticDataset:
    """A synthetic dataset: name, full-size image count, views (``standard`` = the plain
    dataset; ImageNet-C and PUG-ImageNet views are sample groups, each its own images)."""

    name: str
    n_images: int
    views: tuple[str, ...] = ("standard",)

    @property
    def grouped(self) -> bool:
        """True when each view is its own set of images (ImageNet-C, PUG-ImageNet)."""
        return "standard" not in self.views


def paper_suite() -> list[SyntheticDataset]:
    """The full paper suite: ~4.7 M prediction rows per model at scale 1."""
    return [
        SyntheticDataset("imagenet-val", 50_000, ("standard", *INVARIANCE_VIEWS)),
        SyntheticDataset(
            "imagenet-c", 50_000, tuple(f"{c}:{s}" for c in CORRUPTIONS for s in range(1, 6))
        ),
        SyntheticDataset("imagenet-v2", 10_000),
        SyntheticDataset("imagenet-sketch", 50_889),
        SyntheticDataset("imagenet-r", 30_000),
        SyntheticDataset("imagenet-a", 7_500),
        SyntheticDataset("imagenet-hard", 10_980),
        SyntheticDataset("cue-conflict", 1_280),
        SyntheticDataset("pug-imagenet", 8_800, PUG_FACTORS),
    ]


def ood_suite() -> list[SyntheticDataset]:
    """The OOD sets at their real sizes (scored against ``imagenet-val``'s synthetic run)."""
    from beyond_inet.datasets import OOD_SETS

    sizes = {
        "ood-ssb-hard": 49_000,
        "ood-ninco": 5_879,
        "ood-inaturalist": 10_000,
        "ood-textures": 5_640,
        "ood-openimage-o": 15_869,
        "imagenet-o": 2_000,
    }
    return [SyntheticDataset(spec.name, sizes[spec.name]) for spec in OOD_SETS]


def _is_ood(name: str) -> bool:
    return DATASETS.get(name).protocol.role("ood") == "out-of-distribution"


def view_distance(view: str) -> float:
    """How far a transform view is from ``standard`` (0 = the same input)."""
    family, _, arg = view.partition(":")
    if family == "scale":
        return abs(math.log(float(arg))) * 0.5
    if family == "shift":
        return float(arg) / 250 + (0.01 if float(arg) == 0 else 0.0)  # crop-then-resize
    if family == "resolution":
        return abs(math.log(float(arg) / 224)) * 0.4
    return 0.0


# --------------------------------------------------------------------------- samples


def _labels(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "imagenet-r":
        return rng.choice(np.array(imagenet_r_indices()), n)
    if name == "imagenet-a":
        return rng.choice(np.array(imagenet_a_indices()), n)
    if name == "cue-conflict" or _is_ood(name):
        return np.full(n, -1)
    return rng.integers(0, 1000, n)


def _sample_ids(
    name: str, view: str, labels: np.ndarray, rng: np.random.Generator, grouped: bool
) -> np.ndarray:
    """Ids in each dataset's real layout (relative to its folder)."""
    n = len(labels)
    if name == "imagenet-val":
        from beyond_inet.scoring.metrics import load_imagenet_x_annotations

        real = load_imagenet_x_annotations()["file_name"].astype(str).to_numpy()
        return (
            np.sort(real[:n])
            if n <= len(real)
            else np.array([f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)])
        )
    if name == "cue-conflict":
        shapes, tex = rng.choice(CATEGORIES, n), rng.choice(CATEGORIES, n)
        return np.array(
            [
                f"{s}/{s}{i + 1}-{t}{i % 10 + 1}.png"
                for i, (s, t) in enumerate(zip(shapes, tex, strict=True))
            ]
        )
    wnids = imagenet_wnids()
    prefix = ""
    if grouped and name == "imagenet-c":
        c, s = view.split(":")
        prefix = f"{c}/{s}/"
    elif grouped:
        prefix = f"{view}/"
    if name == "imagenetv2" or name == "imagenet-v2":
        return np.array([f"{lab}/{i:07d}.jpeg" for i, lab in enumerate(labels)])
    if name == "imagenet-hard":
        return np.array([f"images/{i}.jpg" for i in range(n)])
    if _is_ood(name):
        return np.array([f"{name}_{i:07d}.jpg" for i in range(n)])
    return np.array([f"{prefix}{wnids[lab]}/{name}_{i:07d}.JPEG" for i, lab in enumerate(labels)])


def _classes(labels: np.ndarray, name: str) -> np.ndarray:
    """The class pool predictions are drawn from (the 200 of R / A, else all 1000)."""
    if name == "imagenet-r":
        return np.array(imagenet_r_indices())
    if name == "imagenet-a":
        return np.array(imagenet_a_indices())
    return np.arange(1000)


def _predictions(
    ids: np.ndarray,
    labels: np.ndarray,
    acc: float,
    rng: np.random.Generator,
    classes: np.ndarray,
    cue: bool,
    base: ImageRecords | None = None,
    flip: float = 0.0,
) -> ImageRecords:
    """Per-image outputs whose fields agree with each other (top-5 sorted, top-1 = pred,
    p_true from the top-5, Brier from the distribution). With ``base`` the predictions of a
    view are the base view's, a fraction ``flip`` of them changed."""
    n = len(ids)
    if base is None:
        correct = rng.random(n) < acc
        other = classes[rng.integers(0, len(classes), n)]
        lab = np.where(labels >= 0, labels, other)
        pred = np.where(correct & (labels >= 0), lab, np.where(other == lab, classes[0], other))
        conf = np.where(correct, rng.beta(6, 1.5, n), rng.beta(2, 3, n))
        conf[rng.random(n) < 0.01] = 1.0  # torchmetrics' extra bin
    else:
        changed = rng.random(n) < flip
        new = classes[rng.integers(0, len(classes), n)]
        pred = np.where(changed, new, base.pred)
        conf = np.where(
            changed, np.clip(base.confidence * rng.uniform(0.5, 0.9, n), 0.05, 1), base.confidence
        )
    rest = np.sort(rng.dirichlet(np.ones(4), n) * (1 - conf[:, None]), axis=1)[:, ::-1]
    topk_prob = np.c_[conf, np.minimum(rest, conf[:, None])]
    others = classes[
        (np.searchsorted(classes, pred)[:, None] + rng.integers(1, len(classes), (n, 4)))
        % len(classes)
    ]
    topk_idx = np.c_[pred, others]
    in_top = topk_idx == labels[:, None]
    p_true = np.where(in_top.any(1), (topk_prob * in_top).sum(1), topk_prob[:, -1] * 0.1)
    p_true = np.where(labels >= 0, p_true, np.nan)
    brier = np.where(labels >= 0, (topk_prob**2).sum(1) - 2 * p_true + 1, np.nan)
    decision = None
    if cue:
        from beyond_inet.datasets.cue_conflict import parse_stimulus_name

        shapes, textures = (np.array(x) for x in zip(*map(parse_stimulus_name, ids), strict=True))
        u = rng.random(n)  # shape with probability acc, texture with 0.55, else any category
        anything = np.asarray(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)]
        decision = np.where(u < acc, shapes, np.where(u < acc + 0.55, textures, anything))
        decision = decision.astype(object)
        correct = decision == shapes
    else:
        correct = (pred == labels) & (labels >= 0)
    return ImageRecords(
        sample_id=ids.astype(object),
        label=labels.astype(np.int64),
        pred=pred,
        confidence=conf,
        p_true=p_true,
        correct=correct,
        topk_idx=topk_idx,
        topk_prob=topk_prob,
        brier=brier,
        decision=decision,
        pred_full=pred.copy() if len(classes) < 1000 else None,
        **_logit_scores(conf),
    )


def _logit_scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """``max_logit`` and ``logsumexp`` consistent with the top-1 probability (softmax:
    ``conf = exp(max_logit - logsumexp)``), the max logit noisy around a rising function of
    it (noise of its own, so the other synthetic numbers stay as they were)."""
    rng = np.random.default_rng([len(conf), int(1e3 * conf.sum())])
    max_logit = 6 + 10 * conf + rng.normal(0, 1.5, len(conf))
    return {"max_logit": max_logit, "logsumexp": max_logit - np.log(np.clip(conf, 1e-12, 1))}


def _temperature_scaled(rec: ImageRecords) -> tuple[ImageRecords, float]:
    """``rec`` with ``*_ts`` columns and its temperature: fitted
    (:func:`~beyond_inet.scoring.temperature.fit_temperature`) on the two-way logits
    (log confidence, log of the rest) of being right, applied to the top-1 probability;
    the other classes' probabilities are rescaled to the remaining mass."""
    from beyond_inet.scoring.temperature import fit_temperature

    conf = np.clip(rec.confidence, 1e-6, 1 - 1e-6)
    z = np.log(np.c_[conf, 1 - conf])
    labelled = rec.label >= 0
    t = fit_temperature(z, np.where(labelled, np.where(rec.correct, 0, 1), -1))
    w = np.exp(z / t)
    conf_ts = w[:, 0] / w.sum(1)
    r = (1 - conf_ts) / (1 - conf)
    p_true = np.where(rec.correct, conf_ts, rec.p_true * r)
    squares = conf_ts**2 + r**2 * ((rec.topk_prob**2).sum(1) - conf**2)
    p_true = np.where(labelled, p_true, np.nan)
    brier = np.where(labelled, squares - 2 * p_true + 1, np.nan)
    return dataclasses.replace(rec, confidence_ts=conf_ts, p_true_ts=p_true, brier_ts=brier), t


def _with_factor_values(
    vp: ImageRecords, name: str, view: str, rng: np.random.Generator
) -> ImageRecords:
    n = len(vp.sample_id)
    if name == "pug-imagenet":
        values = rng.choice(np.arange(0, 360, 45), n).astype(str).astype(object)
        if view == "Worlds":
            values = rng.choice(np.array(["desert", "forest", "city", "beach"]), n).astype(object)
    elif name == "imagenet-hard":
        values = rng.choice(
            np.array(["imagenet", "imagenet_v2", "imagenet_sketch", "objectnet"]), n
        ).astype(object)
    else:
        return vp
    return dataclasses.replace(vp, factor_value=values)


# --------------------------------------------------------------------------- images


def synthetic_image(
    label: int, seed: int, size: tuple[int, int] = (96, 72), noise: float = 8.0
) -> Image.Image:
    """A small picture for a synthetic sample: a hue per class, stripes per sample, pixel
    noise of SD ``noise`` (0: smooth, compresses well)."""
    rng = np.random.default_rng(seed)
    hue = (label % 1000) / 1000 if label >= 0 else rng.random()
    base = np.array(colorsys.hsv_to_rgb(hue, 0.6, 0.9)) * 255
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    stripes = 0.8 + 0.2 * np.sin(x * rng.uniform(0.1, 0.4) + y * rng.uniform(0.1, 0.4))
    grain = rng.normal(0, noise, (h, w, 3)) if noise > 0 else 0.0
    arr = np.clip(base[None, None, :] * stripes[..., None] + grain, 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


def _write_images(root: Path, vp: ImageRecords, limit: int) -> None:
    for i, (sid, lab) in enumerate(zip(vp.sample_id[:limit], vp.label[:limit], strict=True)):
        path = root / str(sid)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(int(lab), i).save(path)


#: The bundled sample (``data/sample``): how many val images, stimuli per category.
SAMPLE_VAL, SAMPLE_PER_CATEGORY = 64, 2


def write_sample(root: Path | str) -> int:
    """The small generated sample shipped in ``data/sample`` (CC0; numbers on it mean
    nothing): ``imagenet/val/`` with the first :data:`SAMPLE_VAL` official val file names
    (so their labels are the real ones) and ``cue-conflict/`` with
    :data:`SAMPLE_PER_CATEGORY` stimuli per category, each named ``<shape>i-<texture>j.png``.
    Deterministic; returns the number of files written."""
    from beyond_inet.reference import CUE_CONFLICT_CATEGORIES, imagenet_val_labels

    root = Path(root)
    labels = imagenet_val_labels()
    val = root / "imagenet" / "val"
    val.mkdir(parents=True, exist_ok=True)
    n = 0
    for i in range(1, SAMPLE_VAL + 1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        img = synthetic_image(int(labels[name]), i, (96, 96), noise=0.0)
        img.save(val / name, format="JPEG", quality=80)
        n += 1
    cats = list(CUE_CONFLICT_CATEGORIES)
    for c, shape in enumerate(cats):
        (root / "cue-conflict" / shape).mkdir(parents=True, exist_ok=True)
        for j in range(SAMPLE_PER_CATEGORY):
            texture = cats[(c + 1 + j) % len(cats)]
            img = synthetic_image(c * 60 + j, 1000 + c * 10 + j, (112, 112), noise=0.0)
            img.save(root / "cue-conflict" / shape / f"{shape}{j + 1}-{texture}{j + 1}.png")
            n += 1
    return n


# --------------------------------------------------------------------------- runs


def synthetic_run_record(
    run_id: str,
    key: str,
    model: str,
    dataset: str,
    views: list[str],
    n: int,
    weights: str = SYNTHETIC_WEIGHTS,
    dataset_root: str | None = None,
    settings: dict[str, Any] | None = None,
) -> RunRecord:
    """The provenance record of a synthetic run (marked meaningless, ``random_weights``;
    ``settings`` added to ``{"synthetic": true}``)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return RunRecord(
        run_id=run_id,
        run_key=key,
        model=model,
        model_label=model,
        dataset=dataset,
        status="finished",
        weights=weights,
        random_weights=True,
        preprocessing="{}",
        views=json.dumps(views),
        settings=json.dumps({"synthetic": True, **(settings or {})}),
        dataset_root=dataset_root,
        sample_limit=None,
        n_samples=n,
        n_failed=0,
        failed="[]",
        started_at=now,
        finished_at=now,
        seconds=0.0,
        device="synthetic",
        precision="fp32",
        code_version="synthetic",
        library_versions="{}",
    )


def _run(
    model: str,
    plan: SyntheticDataset,
    scale: float,
    seed: int,
    meaningless: bool,
    data_root: Path | None,
    min_images: int = 32,
    write_images: bool = False,
    n_boot: int = 0,
    reference: tuple[str, ImageRecords] | None = None,
) -> tuple[RunRecord, pa.Table, pd.DataFrame, ImageRecords | None]:
    """One synthetic run, and its ``standard`` view's records. An OOD set is scored against
    ``reference`` (run id, records: the model's in-distribution run), as precompute does."""
    from beyond_inet.records import to_arrow
    from beyond_inet.run.plan import evaluations_for
    from beyond_inet.scoring.ood import ood_rows, record_scores

    spec = DATASETS.get(plan.name)
    rng = np.random.default_rng(seed)
    n = max(min_images, round(plan.n_images * scale))
    run_id = uuid.uuid4().hex[:16]
    base_acc = min(0.97, max(0.02, BASE_ACCURACY[plan.name] + rng.normal(0, 0.04)))
    robustness = rng.uniform(0.7, 1.3)  # how much this model's predictions move per view
    classes = _classes(np.zeros(0), plan.name)
    opts = ScoringOptions(n_boot=n_boot, seed=0)
    stored: dict[str, ImageRecords] = {}
    tables, rows = [], []
    root = data_root / spec.layout.subdir if data_root is not None else None
    standard: ImageRecords | None = None
    for k, view in enumerate(plan.views):
        data_rng = np.random.default_rng(sum(map(ord, plan.name)) + 7919 * k * plan.grouped)
        if plan.grouped or standard is None:  # same images for every model
            labels = _labels(plan.name, n, data_rng)
            ids = _sample_ids(plan.name, view, labels, data_rng, plan.grouped)
            if plan.name == "imagenet-val":  # real val file names: their real labels
                real = imagenet_val_labels()
                labels = np.array(
                    [real.get(str(s), int(x)) for s, x in zip(ids, labels, strict=True)]
                )
        vrng = np.random.default_rng(seed * 1000 + k)
        if view == "standard" or plan.grouped:
            acc = base_acc
            if plan.name == "imagenet-c":
                acc = base_acc * (1 - 0.1 * int(view.rsplit(":", 1)[1]))
            elif plan.name == "pug-imagenet":
                acc = base_acc * (0.5 + vrng.random())
            vp = _predictions(ids, labels, acc, vrng, classes, plan.name == "cue-conflict")
            if view == "standard":
                standard = vp
        else:
            assert standard is not None
            flip = 1 - math.exp(-view_distance(view) * robustness)
            vp = _predictions(ids, labels, base_acc, vrng, classes, False, standard, flip)
        vp = _with_factor_values(vp, plan.name, view, vrng)
        if spec.protocol.role("temperature") and (view == "standard" or plan.grouped):
            vp, t = _temperature_scaled(vp)
            folds = (t * 0.97, t * 1.03) if spec.protocol.role("temperature") == "fit" else ()
            rows += [(view, r) for r in temperature_rows(t, folds)]
        stored[view] = vp
        tables.append(to_arrow(vp, run_id, model, plan.name, view))
        evaluations = (
            spec.protocol.evaluations
            if plan.grouped
            else evaluations_for(spec, "standard" if view == "standard" else view)
        )
        rows += [(view, r) for r in score_view(vp, evaluations, opts)]
        if write_images and root is not None and (plan.grouped or view == "standard"):
            _write_images(root, vp, IMAGES_PER_VIEW[plan.grouped])
    rows += score_run(stored, spec.protocol.run_evaluations, opts)
    settings = {}
    if reference is not None and "standard" in stored:
        ref_id, ref = reference
        scores = record_scores(ref)
        rows += [("standard", r) for r in ood_rows(scores, len(ref.sample_id), stored["standard"])]
        settings["ood"] = {
            "in_distribution_run": ref_id,
            "in_distribution_images": len(ref.sample_id),
            "scores": sorted(scores),
        }
    metrics = metrics_frame(run_id, model, plan.name, rows)
    run = synthetic_run_record(
        run_id,
        f"synthetic:{model}:{plan.name}:{scale}:{seed}",
        model,
        plan.name,
        list(plan.views),
        n,
        "random" if meaningless else SYNTHETIC_WEIGHTS,
        str(root) if root is not None else None,
        settings,
    )
    return run, pa.concat_tables(tables), metrics, stored.get("standard")


def fill_store(
    path: Path | str,
    scale: float = 1.0,
    models: Sequence[str] = PAPER_MODELS,
    datasets: Sequence[SyntheticDataset] | None = None,
    seed: int = 0,
    random_models: Sequence[str] = (),
    data_root: Path | str | None = None,
    write_images: bool = False,
    n_boot: int = 0,
    log: bool = False,
) -> int:
    """Write one synthetic run per (model, dataset); returns the prediction rows written.

    Every run is marked meaningless (``random_weights``); ``random_models`` are recorded
    with ``weights='random'`` (as a smoke-test run), the others with ``'synthetic'``. With
    ``data_root`` each run records ``<data_root>/<dataset folder>`` as its dataset root, and
    ``write_images`` puts generated pictures there. The default datasets are the paper's and
    the OOD sets; an OOD set is written only after its reference (``imagenet-val``)."""
    from beyond_inet.datasets import reference_dataset

    store = Store(path)
    plans = list(datasets) if datasets is not None else [*paper_suite(), *ood_suite()]
    root = Path(data_root) if data_root is not None else None
    in_distribution = reference_dataset("ood")
    total = 0
    for i, model in enumerate([*models, *random_models]):
        reference: tuple[str, ImageRecords] | None = None
        for j, plan in enumerate(plans):
            if _is_ood(plan.name) and reference is None:
                continue  # precompute waits for the in-distribution run, too
            run, preds, mets, standard = _run(
                model,
                plan,
                scale,
                seed + 100 * i + j,
                model in random_models,
                root,
                write_images=write_images,
                n_boot=n_boot,
                reference=reference if _is_ood(plan.name) else None,
            )
            if plan.name == in_distribution and standard is not None:
                reference = (run.run_id, standard)
            store.commit_run(run, preds, mets, replace=True)
            total += preds.num_rows
            if log:
                print(f"  {model} {plan.name}: {preds.num_rows:,} rows", flush=True)
    fill_paired(path, n_boot, [*models, *random_models])  # as one precompute of them
    return total


def fill_paired(
    path: Path | str,
    n_boot: int,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> int:
    """What ``precompute`` stores for the runs of one pass: the paired comparisons
    (:func:`beyond_inet.run.commit.paired_records`) of every pair of the latest runs of a
    dataset (of ``models`` and ``datasets``; default all), on each view where both scored
    the same images. Returns the rows stored."""
    from beyond_inet.run.commit import RunSummary, paired_records

    store = Store(path)
    runs = store.query(
        "SELECT model, dataset, arg_max(run_id, finished_at) AS run_id FROM runs "
        "WHERE status = 'finished' AND dataset <> 'profile' GROUP BY model, dataset "
        "ORDER BY dataset, model"
    )
    preds = store.query(
        "SELECT run_id, view, sample_id, correct FROM predictions "
        "WHERE label IS NOT NULL OR decision IS NOT NULL ORDER BY run_id, view, sample_id"
    )
    by_run = {r: {v: x for v, x in g.groupby("view")} for r, g in preds.groupby("run_id")}
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    if datasets is not None:
        runs = runs[runs["dataset"].isin(list(datasets))]
    records = []
    for dataset, g in runs.groupby("dataset"):
        summaries = [
            RunSummary(m, dataset, "done", run_id=r)
            for m, r in zip(g["model"], g["run_id"], strict=True)
        ]
        first = by_run.get(summaries[0].run_id, {})
        for s in summaries:
            for view, p in by_run.get(s.run_id, {}).items():
                if view in first and first[view]["sample_id"].tolist() == p["sample_id"].tolist():
                    s.correct[view] = p["correct"].to_numpy(bool)
        records += paired_records(dataset, summaries, ScoringOptions(n_boot=n_boot))
    if records:
        store.commit_paired(records, log=lambda *_: None)
    return len(records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Fill a synthetic results store for the dashboard "
        "(numbers meaningless; marked so everywhere)."
    )
    p.add_argument("--store", type=Path, help="the store to fill (required unless --sample)")
    p.add_argument(
        "--sample",
        type=Path,
        metavar="DIR",
        help="instead, write the small generated image sample (data/sample) into DIR",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=0.01,
        help="fraction of the full paper suite's images (1.0 = ~18.8 M rows)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="where the generated pictures go (default: <store name>-datasets next to the store)",
    )
    p.add_argument("--no-images", action="store_true", help="write no pictures")
    args = p.parse_args(argv)
    if args.sample is not None:
        if args.sample.exists() and not args.sample.is_dir():
            p.error(f"--sample {args.sample} is a file; give a folder")
        try:
            print(f"wrote {write_sample(args.sample)} generated images to {args.sample}")
        except OSError as e:
            p.error(f"--sample {args.sample}: {e.strerror or e}")
        return 0
    if args.store is None:
        p.error("--store is required (or --sample DIR)")
    root = args.data_root or args.store.with_name(f"{args.store.stem}-datasets")
    n = fill_store(
        args.store,
        args.scale,
        data_root=root,
        write_images=not args.no_images,
        n_boot=100,
        log=True,
    )
    fill_transfer(args.store)
    fill_own(args.store, data_root=root, n_boot=100, write_images=not args.no_images)
    fill_cka(
        args.store,
        [
            ("deit3_21k", "deit3_21k"),
            ("deit3_21k", "vit_clip"),
            ("convnext_base_21k", "convnext_clip"),
        ],
    )
    print(
        f"wrote {n:,} prediction rows to {args.store}"
        + ("" if args.no_images else f" and pictures under {root}")
    )
    print(f"open it: streamlit run dashboard/app.py -- --store {args.store} --data-root {root}")
    return 0


# --------------------------------------------------------------------------- transfer, CKA

#: Rough probe accuracy per VTAB group (the paper's range) for synthetic transfer runs.
TRANSFER_ACCURACY = {"natural": 0.86, "specialized": 0.86, "structured": 0.5}


def _transfer_run(
    model: str, task_name: str, seed: int, n: int = 200, n_classes: int = 10
) -> tuple[RunRecord, pa.Table, pd.DataFrame]:
    """A synthetic probe run of ``model`` on one VTAB task, scored by production code."""
    import torch

    from beyond_inet.datasets.transfer import TASKS
    from beyond_inet.records import to_arrow
    from beyond_inet.run.engine import score_logits
    from beyond_inet.run.transfer import transfer_evaluations

    task = TASKS.get(task_name)
    rng = np.random.default_rng(seed)
    acc = min(0.98, max(0.05, TRANSFER_ACCURACY[task.group] + rng.normal(0, 0.05)))
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(0, 1, (n, n_classes))
    hit = rng.random(n) < acc
    logits[np.arange(n), np.where(hit, labels, (labels + 1) % n_classes)] += 4.0
    out = score_logits(torch.from_numpy(logits), torch.from_numpy(labels), None)
    rec = ImageRecords(
        sample_id=np.array([f"test/{i:05d}" for i in range(n)], dtype=object),
        label=labels,
        pred=out["pred"],
        confidence=out["confidence"],
        p_true=out["p_true"],
        correct=out["pred"] == labels,
        topk_idx=out["topk_idx"],
        topk_prob=out["topk_prob"],
        brier=out["brier"],
    )
    run_id = uuid.uuid4().hex[:16]
    rows = [("standard", r) for r in score_view(rec, transfer_evaluations(task), ScoringOptions(0))]
    rows += [
        ("standard", MetricRow(m, v))
        for m, v in (("probe_c", 100.0), ("n_train", 800.0), ("n_val", 200.0), ("n_test", n))
    ]
    run = synthetic_run_record(
        run_id, f"synthetic:{model}:{task.stored}:{seed}", model, task.stored, ["standard"], n
    )
    return (
        run,
        to_arrow(rec, run_id, model, task.stored, "standard"),
        metrics_frame(run_id, model, task.stored, rows),
    )


def fill_transfer(
    path: Path | str, models: Sequence[str] = PAPER_MODELS, tasks: Sequence[str] | None = None
) -> int:
    """One synthetic probe run per (model, VTAB task); returns the runs written."""
    from beyond_inet.datasets.transfer import TASKS

    store = Store(path)
    names = list(tasks) if tasks is not None else list(TASKS)
    for i, model in enumerate(models):
        for j, name in enumerate(names):
            store.commit_run(*_transfer_run(model, name, 7000 + 100 * i + j), replace=True)
    return len(models) * len(names)


#: The synthetic own dataset: its name and classes (test images per class: OWN_PER_CLASS).
OWN_NAME = "leaves"
OWN_CLASSES = ("healthy", "leaf_rust", "powdery_mildew", "scab", "sooty_mould", "spot")
OWN_PER_CLASS = 20


def _own_run(
    model: str, view_seed: int, data_root: Path | None, n_boot: int
) -> tuple[RunRecord, pa.Table, pd.DataFrame]:
    """A synthetic ``--own`` run: views ``probe``, ``knn`` (and ``zero-shot`` for a CLIP
    model), scored and temperature-scaled by production code as precompute does."""
    import torch

    from beyond_inet.datasets.own import STORED_PREFIX
    from beyond_inet.records import record_from, to_arrow
    from beyond_inet.run.engine import SCALED, score_logits
    from beyond_inet.run.own import OWN_EVALUATIONS
    from beyond_inet.scoring import temperature as ts

    k = len(OWN_CLASSES)
    labels = np.repeat(np.arange(k), OWN_PER_CLASS)
    n = len(labels)
    ids = np.array(
        [f"{OWN_CLASSES[c]}/{OWN_CLASSES[c]}_{i:03d}.png" for i, c in enumerate(labels)],
        dtype=object,
    )
    dataset = STORED_PREFIX + OWN_NAME
    views = ["probe", "knn", *(["zero-shot"] if "clip" in model else [])]
    run_id = uuid.uuid4().hex[:16]
    tables, rows = [], []
    for j, view in enumerate(views):
        rng = np.random.default_rng(view_seed * 10 + j)
        acc = {"probe": 0.85, "knn": 0.75, "zero-shot": 0.55}[view] + rng.normal(0, 0.05)
        hard = labels >= k - 2  # the last two classes are confused with each other
        hit = rng.random(n) < np.where(hard, acc - 0.25, acc)
        wrong = np.where(hard, k - 1 - (labels - (k - 2)), (labels + 1) % k)
        logits = rng.normal(0, 1, (2 * n, k))
        both = np.r_[labels, labels]
        target = np.r_[np.where(hit, labels, wrong), np.where(hit, labels, wrong)]
        logits[np.arange(2 * n), target] += 3.5  # val (first n) and test alike
        t, ok = ts.fit_with_identification(logits[:n], both[:n])
        test = torch.from_numpy(logits[n:])
        out = score_logits(test, torch.from_numpy(labels), None)
        own = {"sample_id": ids, "label": labels, "correct": out["pred"] == labels}
        rec = record_from(ImageRecords, own, out)
        if ok:
            scaled = score_logits(test / t, torch.from_numpy(labels), None)
            rec = dataclasses.replace(rec, **{f"{c}_ts": scaled[c] for c in SCALED})
        scored = score_view(rec, OWN_EVALUATIONS, ScoringOptions(n_boot=n_boot, seed=0))
        rows += [(view, r) for r in (*scored, *(temperature_rows(t) if ok else []))]
        tables.append(to_arrow(rec, run_id, model, dataset, view))
    root = data_root / "own" / OWN_NAME if data_root is not None else None
    run = synthetic_run_record(
        run_id,
        f"synthetic:{model}:{dataset}:{view_seed}",
        model,
        dataset,
        views,
        n,
        dataset_root=str(root) if root is not None else None,
        settings={"own": {"name": OWN_NAME, "classes": list(OWN_CLASSES)}},
    )
    return run, pa.concat_tables(tables), metrics_frame(run_id, model, dataset, rows)


def fill_own(
    path: Path | str,
    models: Sequence[str] = PAPER_MODELS,
    data_root: Path | str | None = None,
    n_boot: int = 0,
    write_images: bool = False,
) -> int:
    """One synthetic ``--own`` run per model on :data:`OWN_NAME`, with the paired
    comparisons precompute stores; ``write_images`` puts pictures under
    ``<data_root>/own/<name>``. Returns the runs written."""
    from beyond_inet.datasets.own import STORED_PREFIX

    store = Store(path)
    root = Path(data_root) if data_root is not None else None
    for i, model in enumerate(models):
        store.commit_run(*_own_run(model, 9000 + i, root, n_boot), replace=True)
    if write_images and root is not None:
        for c, name in enumerate(OWN_CLASSES):
            folder = root / "own" / OWN_NAME / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(OWN_PER_CLASS):
                image = synthetic_image(c * 150, 77 * c + i, noise=0.0)
                image.save(folder / f"{name}_{c * OWN_PER_CLASS + i:03d}.png")
    fill_paired(path, n_boot, models, [STORED_PREFIX + OWN_NAME])
    return len(models)


def synthetic_cka(n_a: int, n_b: int, same: bool, seed: int = 0) -> np.ndarray:
    """A plausible CKA matrix: high near corresponding depths, falling away from them;
    a model with itself is symmetric with ones on the diagonal."""
    da, db = np.linspace(0, 1, n_a), np.linspace(0, 1, n_b)
    gap = np.abs(da[:, None] - db[None, :])
    if same:
        return np.exp(-2.5 * gap)
    noise = np.random.default_rng(seed).normal(0, 0.03, gap.shape)
    return np.clip(0.9 * np.exp(-2.0 * gap) + noise, 0, 1)


def fill_cka(
    path: Path | str, pairs: Sequence[tuple[str, str]], layers: int = 12, n_images: int = 2000
) -> int:
    """One synthetic CKA run per model pair (``blocks.<i>`` taps); returns the runs."""
    from beyond_inet.records import CkaRunRecord, cka_cells

    store = Store(path)
    for k, (a, b) in enumerate(pairs):
        names = [f"blocks.{i}" for i in range(layers)]
        matrix = synthetic_cka(layers, layers, a == b, k)
        now = datetime.now(UTC).replace(tzinfo=None)
        run_id = uuid.uuid4().hex[:16]
        run = CkaRunRecord(
            run_id=run_id,
            run_key=f"synthetic:cka:{a}:{b}",
            model_a=a,
            model_b=b,
            dataset="imagenet-val",
            n_images=n_images,
            tokens="mean",
            layers_a=json.dumps(names),
            layers_b=json.dumps(names),
            weights_a=SYNTHETIC_WEIGHTS,
            weights_b=SYNTHETIC_WEIGHTS,
            random_weights=True,
            preprocessing_a="{}",
            preprocessing_b="{}",
            dataset_root=None,
            estimator="synthetic (numbers meaningless)",
            batch_size=64,
            started_at=now,
            finished_at=now,
            seconds=0.0,
            device="synthetic",
            precision="fp32",
            code_version="synthetic",
            library_versions="{}",
        )
        store.commit_cka(run, cka_cells(run_id, matrix, names, names), replace=True)
    return len(pairs)


if __name__ == "__main__":
    raise SystemExit(main())
