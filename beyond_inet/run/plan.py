"""What a ``precompute`` invocation runs: the configuration, the datasets found, the models
loaded, and per dataset each model's views, run identity and whether it is already done."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from beyond_inet.datasets import (
    DATASETS,
    DatasetSpec,
    FoundDataset,
    dataset_preprocessing,
    discover,
    locate,
    reference_dataset,
)
from beyond_inet.datasets.own import OwnSource
from beyond_inet.log import Log
from beyond_inet.models import (
    LoadedModel,
    LoadOptions,
    PreprocessingChoice,
    WeightsSource,
    expand_model_names,
    load_model,
    resolve_spec,
)
from beyond_inet.records import identity_key
from beyond_inet.run.engine import RunSettings, Shard
from beyond_inet.run.errors import PrecomputeError
from beyond_inet.scoring import ood
from beyond_inet.scoring.evaluations import ScoringOptions
from beyond_inet.scoring.probe import ProbeSettings
from beyond_inet.settings import (
    DEFAULT_CKA_IMAGES,
    DEFAULT_DATA_ROOT,
    DEFAULT_LOGIT_SCALE,
    DEFAULT_STORE,
)
from beyond_inet.store import Store
from beyond_inet.transforms.views import STANDARD, View, parse_view


@dataclass(frozen=True)
class PrecomputeConfig:
    """Everything one ``precompute`` invocation needs (the CLI builds it from argv)."""

    models: tuple[str, ...]
    data_root: Path = DEFAULT_DATA_ROOT
    store: Path = DEFAULT_STORE
    datasets: tuple[str, ...] | None = None
    dataset_paths: dict[str, Path] = field(default_factory=dict)
    weights: WeightsSource = field(default_factory=WeightsSource)
    preprocessing: PreprocessingChoice = "paper"
    logit_scale: float = DEFAULT_LOGIT_SCALE
    limit: int | None = None
    run: RunSettings = field(default_factory=RunSettings)
    force: bool = False
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    cache_dir: Path | None = None
    #: transform views (besides ``standard``) for datasets whose protocol has transform views
    extra_views: tuple[str, ...] = ()
    #: transfer tasks to probe (``--transfer``; ``()`` = the ImageNet evaluations instead)
    transfer: tuple[str, ...] = ()
    transfer_protocol: str = "vtab-1k"
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    #: the model pair of a CKA run (``--cka A,B``), its image count and token pooling
    cka: tuple[str, ...] = ()
    cka_images: int = DEFAULT_CKA_IMAGES
    cka_tokens: str = "mean"
    #: ``minibatch`` (unbiased HSIC) or ``full`` (biased, full batch): see scoring/cka.py
    cka_estimator: str = "minibatch"
    #: ``--shard i/n``: evaluate one shard into the staging area (no commit)
    shard: Shard | None = None
    #: ``--merge``: commit the runs whose shards are all staged
    merge: bool = False
    #: ``--own NAME=PATH``: your own datasets to evaluate on (instead of the ImageNet ones)
    own: tuple[OwnSource, ...] = ()


def select_datasets(names: Sequence[str] | None) -> list[DatasetSpec]:
    """Dataset specs by name (unknown names fail with suggestions); ``None`` = all."""
    return [DATASETS.get(n) for n in names] if names else [s for _, s in DATASETS.items()]


def find_datasets(cfg: PrecomputeConfig, log: Log) -> list[FoundDataset]:
    """Locate the selected datasets; missing ones are skipped with a one-line note."""
    found = []
    for spec in select_datasets(cfg.datasets):
        root = locate(spec, cfg.data_root, cfg.dataset_paths.get(spec.name))
        ds = discover(spec, root, cfg.limit)
        if ds is None:
            log(f"note: {spec.name}: not found at {root} (expected {spec.layout.text}); skipped.")
            continue
        found.append(ds)
    if not found:
        raise PrecomputeError(
            f"No dataset found under {cfg.data_root}: `python -m precompute --list-datasets "
            f"--data-root {cfg.data_root}` shows the layout each needs; give a folder with "
            "--dataset-path NAME=DIR, or try the bundled sample with --data-root data/sample."
        )
    return found


def load_models(cfg: PrecomputeConfig, log: Log) -> list[LoadedModel]:
    """Resolve every name first (typos fail before any loading), then load each."""
    names = expand_model_names(list(cfg.models))
    if cfg.weights.kind == "checkpoint" and len(names) != 1:
        raise PrecomputeError("--checkpoint needs exactly one --model (the checkpoint's arch).")
    for n in names:
        resolve_spec(n)
    opts = LoadOptions(
        weights=cfg.weights,
        preprocessing=cfg.preprocessing,
        logit_scale=cfg.logit_scale,
        cache_dir=cfg.cache_dir,
    )
    loaded = []
    for n in names:
        log(f"loading {n} ...")
        loaded.append(load_model(n, opts))
        if loaded[-1].is_random:
            log(f"warning: {n} has RANDOM weights; its numbers are meaningless (smoke test).")
    return loaded


def library_versions(families: Sequence[str] = ("timm", "open_clip")) -> dict[str, str]:
    """The versions that affect numbers: torch (and the CUDA / cuDNN it runs with),
    torchvision and each model family's library."""
    import torchvision

    from beyond_inet.models import family
    from beyond_inet.run.engine import runtime_versions

    versions = {**runtime_versions(), "torchvision": torchvision.__version__}
    for f in families:
        versions.update(family(f).versions())
    return versions


def run_environment(settings: RunSettings, model: LoadedModel) -> dict[str, object]:
    """The part of a run's identity that is how it ran, not what: the device and its name,
    precision, TF32, decoder, batch size, torch.compile, and the library versions."""
    return {**settings.identity(), "versions": library_versions((model.spec.family,))}


def run_key(
    model: LoadedModel,
    dataset: str,
    views: Sequence[View],
    limit: int | None,
    environment: dict[str, object],
    content: str = "",
    temperature: float | None = None,
    in_distribution_run: str | None = None,
) -> str:
    """Identity of a run — everything that can change a stored number (README, "Run
    identity"): model, weights, dataset and its content (``content``: the
    :meth:`FoundDataset.fingerprint` of the evaluated files), views, preprocessing,
    settings, limit, the temperature applied (when one is), the in-distribution run an OOD
    set is scored against (when there is one) and the ``environment``
    (:func:`run_environment`: device, precision, TF32, decoder, batch size, compile,
    library versions). A run is skipped only when a finished run has the same key."""
    payload = {
        "model": model.name,
        "weights": model.weights,
        "dataset": dataset,
        "views": [v.name for v in views],
        "preprocessing": model.preprocessing.to_dict(),
        "settings": {k: v for k, v in model.settings.items() if k != "head_cache"},
        "limit": limit,
        "environment": environment,
        "content": content,
    }
    if temperature is not None:
        payload["temperature"] = repr(float(temperature))
    if in_distribution_run is not None:
        payload["in_distribution_run"] = in_distribution_run
    return identity_key(payload)


def model_for_dataset(model: LoadedModel, spec: DatasetSpec) -> LoadedModel:
    """``model`` with the preprocessing the dataset's protocol gives it (its own unless the
    dataset owns its input recipe, e.g. cue-conflict at native size)."""
    pp = dataset_preprocessing(spec, model.preprocessing)
    return model if pp == model.preprocessing else replace(model, preprocessing=pp)


def evaluations_for(spec: DatasetSpec, transform_view: str) -> tuple[str, ...]:
    """Per-view evaluations for one transform view: all of the protocol's evaluations for
    ``standard``; its ``view_evaluations`` (when set) for scale / shift / resolution."""
    p = spec.protocol
    if transform_view == STANDARD.name or p.view_evaluations is None:
        return p.evaluations
    return p.view_evaluations


def runnable_views(
    model: LoadedModel, views: Sequence[View], settings: RunSettings, log: Log
) -> list[View]:
    """``views`` minus those whose input size ``model`` cannot take (e.g. a fixed-size
    architecture at ``resolution:<r>``): one probe forward per other size, a note for each
    view dropped."""
    import torch

    native = model.preprocessing.crop_size
    sizes = {v.input_size(model.preprocessing) for v in views} - {native}
    bad: dict[int, str] = {}
    if sizes:
        module = model.module.to(settings.device).eval()
        for size in sorted(sizes):
            probe = torch.zeros(1, 3, size, size, device=settings.device)
            try:
                with torch.inference_mode():
                    module(probe)
            except Exception as e:  # any failure means: this model cannot run at this size
                bad[size] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    keep = []
    for v in views:
        size = v.input_size(model.preprocessing)
        if size in bad:
            log(
                f"note: {model.name} cannot run at {size}x{size} ({bad[size]}); "
                f"view {v.name} skipped for it."
            )
        else:
            keep.append(v)
    return keep


@dataclass
class DatasetPlan:
    """One found dataset: the models as it evaluates them (its input recipe applied), each
    model's views and run key."""

    found: FoundDataset
    models: list[LoadedModel]
    views: dict[str, list[View]]
    keys: dict[str, str]
    #: model -> (temperature, the run that fitted it) for a dataset that applies one
    temperatures: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: model -> its in-distribution run, for an OOD set (the committing process only)
    in_distribution: dict[str, InDistribution] = field(default_factory=dict)


R = TypeVar("R")
#: A model's identity across datasets: (model, weights, preprocessing JSON, precision).
ModelKey = tuple[str, str, str, str]


def model_key(model: LoadedModel, precision: str) -> ModelKey:
    """What a reference result must share with the run that uses it."""
    return (model.name, model.weights, model.preprocessing.to_json(), precision)


@dataclass(frozen=True)
class InDistribution:
    """The in-distribution run an OOD set is scored against: its id, image count and
    per-image OOD scores (:func:`beyond_inet.scoring.ood.scores_of`)."""

    run_id: str
    n_images: int
    scores: dict[str, np.ndarray]


@dataclass
class References:
    """Reference results of cross-dataset evaluations this process made (runs maybe not
    committed yet): temperatures fitted (with the fitting run) and in-distribution OOD
    scores, by :func:`model_key`."""

    temperatures: dict[ModelKey, tuple[float, str]] = field(default_factory=dict)
    in_distribution: dict[ModelKey, InDistribution] = field(default_factory=dict)


def _per_model(
    evaluation: str,
    role: str,
    found: FoundDataset,
    loaded: Sequence[LoadedModel],
    precision: str,
    lookup: Callable[[ModelKey], R | None],
    note: Callable[[str], str],
    log: Log,
) -> dict[str, R]:
    """Each model's reference result (``lookup`` of its :func:`model_key`) when ``found``
    plays ``role`` in the cross-dataset ``evaluation``; ``note(model)`` logged for each
    model without one."""
    if found.spec.protocol.role(evaluation) != role:
        return {}
    out = {}
    for m in loaded:
        got = lookup(model_key(m, precision))
        if got is None:
            log(note(m.name))
        else:
            out[m.name] = got
    return out


def fitted_temperatures(
    store: Store,
    cfg: PrecomputeConfig,
    found: FoundDataset,
    loaded: Sequence[LoadedModel],
    log: Log,
    session: References | None = None,
) -> dict[str, tuple[float, str]]:
    """For a dataset in the ``apply`` role of temperature scaling, each model's temperature
    fitted on ImageNet val (same weights, preprocessing and precision): fitted by this
    process (``session``, a run not committed yet), else from the store; a note for each
    model that has none (its calibration after scaling is then left out)."""
    source = reference_dataset("temperature")
    mine = (session or References()).temperatures

    def lookup(key: ModelKey) -> tuple[float, str] | None:
        return mine.get(key) or store.fitted_temperature(source, *key)

    def note(model: str) -> str:
        return (
            f"note: no temperature for {model} in {cfg.store} (run {source} first, same "
            f"weights and precision): {found.spec.name} is stored without calibration "
            "after temperature scaling."
        )

    return _per_model("temperature", "apply", found, loaded, cfg.run.precision, lookup, note, log)


def in_distribution_runs(
    store: Store,
    cfg: PrecomputeConfig,
    found: FoundDataset,
    loaded: Sequence[LoadedModel],
    log: Log,
    session: References | None = None,
) -> dict[str, InDistribution]:
    """For an OOD set (the ``out-of-distribution`` role of ``ood``), each model's
    in-distribution run (same weights, preprocessing and precision): made by this process,
    else the latest in the store; a note for each model without one (its OOD detection
    metrics are then left out)."""
    source = reference_dataset("ood")
    mine = (session or References()).in_distribution

    def lookup(key: ModelKey) -> InDistribution | None:
        if key in mine:
            return mine[key]
        stored = store.in_distribution_scores(source, *key)
        if stored is None:
            return None
        run_id, frame = stored
        scores = ood.scores_of({c: frame[c].to_numpy() for c in frame.columns})
        return InDistribution(run_id, len(frame), scores) if scores else None

    def note(model: str) -> str:
        return (
            f"note: no {source} run of {model} with OOD scores in {cfg.store} (run "
            f"{source} first, same weights and precision; a run stored before beyond-inet "
            f"kept logit scores needs --force): {found.spec.name} is stored without OOD "
            "detection metrics."
        )

    return _per_model(
        "ood", "out-of-distribution", found, loaded, cfg.run.precision, lookup, note, log
    )


def plan_dataset(
    cfg: PrecomputeConfig,
    found: FoundDataset,
    loaded: Sequence[LoadedModel],
    log: Log,
    temperatures: dict[str, tuple[float, str]] | None = None,
    in_distribution: dict[str, InDistribution] | None = None,
) -> DatasetPlan:
    """Views and run keys of every model on one found dataset (``temperatures``: from
    :func:`fitted_temperatures`; ``in_distribution``: from :func:`in_distribution_runs`;
    both part of the keys)."""
    temperatures = temperatures or {}
    in_distribution = in_distribution or {}
    models = [model_for_dataset(m, found.spec) for m in loaded]
    grid = [parse_view(v) for v in cfg.extra_views]
    views = [STANDARD, *grid] if found.spec.protocol.transform_views else [STANDARD]
    per_model = {m.name: runnable_views(m, views, cfg.run, log) for m in models}
    content = found.fingerprint()
    keys = {
        m.name: run_key(
            m,
            found.spec.name,
            per_model[m.name],
            cfg.limit,
            run_environment(cfg.run, m),
            content,
            temperatures[m.name][0] if m.name in temperatures else None,
            in_distribution[m.name].run_id if m.name in in_distribution else None,
        )
        for m in models
    }
    return DatasetPlan(found, models, per_model, keys, temperatures, in_distribution)
