"""Build the model catalogue from the libraries' published CSVs (run when they publish more).

    python -m beyond_inet.catalog.build                       # data/catalog/sources -> data/catalog
    python -m beyond_inet.catalog.build --sources DIR --out DIR

``--sources`` holds ``timm/`` (pytorch-image-models ``results/``) and ``open_clip/``
(open_clip ``docs/``) unchanged. The mapping of source files and columns to this project's
dataset / metric names, the family and training-data rules and the effective-robustness
baseline rule are data in ``data/catalog/rules/``. Needs timm (for each weight's default
input size, which names the timm rows). Writes ``results.parquet``, ``models.parquet`` and
``effective_robustness_fits.csv``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from beyond_inet.catalog import (
    CATALOG_DIR,
    FITS,
    MODELS,
    PUBLISHED_ONLY,
    RESULTS,
    effective_robustness,
    fit_baseline,
)

#: The library name of imagenet-testbed's own rows (its source folder: imagenet_testbed/).
TESTBED = PUBLISHED_ONLY
TESTBED_FILES = ("results.csv", "results_metadata.csv", "model_types.csv")
#: A testbed model and a catalogue model must agree this closely on ImageNet val top-1 (in
#: 0-1) to be mapped by the ``*`` rule (a shared name only: torchvision's ``tv_in1k``), and
#: at most :data:`NAMED_VAL_GAP` when a rule names the pair as the same checkpoint (ports
#: evaluated with other preprocessing differ by up to ~0.8 pp) (rules/imagenet_testbed_models.csv).
SAME_WEIGHTS_VAL_GAP = 0.005
NAMED_VAL_GAP = 0.01

#: Source commits of the copied files (see data/catalog/README.md).
SOURCE_COMMITS = {
    "timm": "huggingface/pytorch-image-models@aa4b5850c154 results/",
    "open_clip": "mlfoundations/open_clip@89fb801f1e60 docs/",
    TESTBED: "modestyachts/imagenet-testbed-website@b9bf537 ",
}
GPU_BENCH = "benchmark-infer-amp-nchw-pt291-cu128-4090.csv"
CPU_BENCH = "benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv"
TIMM_META = "model_metadata-in1k.csv"
OPEN_CLIP_PROFILE = "model_profile.csv"
MODEL_COLUMNS = [
    "library",
    "model_id",
    "name",
    "arch",
    "tag",
    "eval_size",
    "license",
    "family",
    "training_data",
    "pretrain",
    "zero_shot",
    "baseline",
    "paper_model",
    "params_m",
    "params_total_m",
    "gmacs",
    "input_size",
    "crop_pct",
    "interpolation",
    "throughput_gpu",
    "throughput_cpu",
    "model_type",
    "testbed_type",
    "testbed_model",
]


def read_rules(directory: Path, name: str) -> pd.DataFrame:
    """A rules CSV (``#`` lines are comments; empty cells stay empty strings)."""
    return pd.read_csv(directory / name, comment="#", dtype=str, keep_default_na=False)


def first_match(text: str, rules: pd.DataFrame, value: str, default: str) -> str:
    """The ``value`` column of the first rule whose ``pattern`` matches ``text``."""
    for pattern, out in zip(rules["pattern"], rules[value], strict=True):
        if re.search(pattern, text.lower()):
            return out
    return default


def _number(x: object) -> float:
    """``'1,013.01'`` / ``12.5`` / ``''`` -> float (NaN when empty)."""
    text = str(x).replace(",", "").strip()
    return float(text) if text and text.lower() != "nan" else float("nan")


# --------------------------------------------------------------------------- timm


def _timm_default_size(weight: str) -> int:
    import timm

    cfg = timm.models.get_pretrained_cfg(weight)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {weight!r}: upgrade timm")
    return int(cfg.to_dict()["input_size"][-1])


def timm_license(weight: str) -> str:
    """The licence timm's pretrained config records for a weight, else ``unknown``."""
    import timm

    cfg = timm.models.get_pretrained_cfg(weight)
    value = getattr(cfg, "license", None) if cfg is not None else None
    return str(value) if value else "unknown"


def timm_model_id(weight: str, size: int, default: int) -> str:
    """``arch.tag`` at the weight's own input size, ``arch.tag@<size>`` at another."""
    return weight if size == default else f"{weight}@{size}"


def timm_tables(src: Path, dmap: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results rows, model rows) of timm."""
    parts, seen = [], []
    defaults: dict[str, int] = {}
    for file, group in dmap.groupby("file", sort=False):
        df = pd.read_csv(src / file, dtype=str, keep_default_na=False)
        for weight in set(df["model"]) - set(defaults):
            defaults[weight] = _timm_default_size(weight)
        sizes = df["img_size"].astype(int)
        df["model_id"] = [
            timm_model_id(w, z, defaults[w]) for w, z in zip(df["model"], sizes, strict=True)
        ]
        df["size"] = sizes
        seen.append(df[["model_id", "model", "size", "param_count", "crop_pct", "interpolation"]])
        for g in group.itertuples():
            parts.append(
                pd.DataFrame(
                    {
                        "library": "timm",
                        "model_id": df["model_id"],
                        "dataset": g.dataset,
                        "metric": g.metric,
                        "value": df[g.column].map(_number) / 100.0,
                        "source": f"{SOURCE_COMMITS['timm']}{file}",
                    }
                )
            )
    attrs = pd.concat(seen, ignore_index=True).drop_duplicates("model_id")
    meta = pd.read_csv(src / TIMM_META, dtype=str, keep_default_na=False)
    pretrain = dict(zip(meta["model"], meta["pretrain"], strict=True))
    gpu, cpu = (_bench_index(src / f) for f in (GPU_BENCH, CPU_BENCH))
    models = []
    for a in attrs.itertuples(index=False):
        arch, _, tag = a.model.partition(".")
        g, c = _bench_row(gpu, arch, a.size), _bench_row(cpu, arch, a.size)
        models.append(
            {
                "library": "timm",
                "model_id": a.model_id,
                "name": f"timm:{a.model}",
                "arch": arch,
                "tag": tag,
                "eval_size": a.size,
                "license": timm_license(a.model),
                "pretrain": pretrain.get(arch, ""),
                "zero_shot": False,
                "params_m": _number(a.param_count),
                "params_total_m": np.nan,
                "gmacs": _number(g.get("infer_gmacs", c.get("infer_gmacs", ""))),
                "input_size": a.size,
                "crop_pct": _number(a.crop_pct),
                "interpolation": a.interpolation,
                "throughput_gpu": _number(g.get("infer_samples_per_sec", "")),
                "throughput_cpu": _number(c.get("infer_samples_per_sec", "")),
            }
        )
    return pd.concat(parts, ignore_index=True), pd.DataFrame(models)


def _bench_index(path: Path) -> dict[str, list[dict[str, str]]]:
    """A timm benchmark CSV by architecture (a list of rows: one per measured size)."""
    out: dict[str, list[dict[str, str]]] = {}
    for r in pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"):
        out.setdefault(r["model"], []).append(r)
    return out


def _bench_row(index: dict[str, list[dict[str, str]]], arch: str, size: int) -> dict[str, str]:
    """The architecture's benchmark row at ``size``, else its first one, else {}."""
    rows = index.get(arch, [])
    exact = [r for r in rows if int(r["infer_img_size"]) == size]
    return (exact or rows or [{}])[0]


# --------------------------------------------------------------------------- open_clip


def open_clip_tables(src: Path, dmap: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results rows, model rows) of open_clip (zero-shot)."""
    rows, models = [], []
    profile = pd.read_csv(src / OPEN_CLIP_PROFILE, dtype=str, keep_default_na=False)
    prof = {r["model"]: r for r in profile.to_dict("records")}
    for file, group in dmap.groupby("file", sort=False):
        df = pd.read_csv(src / file, dtype=str, keep_default_na=False)
        for r in df.to_dict("records"):
            arch, tag = r["name"], r["pretrained"]
            mid = f"{arch}:{tag}"
            for g in group.itertuples():
                if r.get(g.column, "") == "":
                    continue
                rows.append(
                    {
                        "library": "open_clip",
                        "model_id": mid,
                        "dataset": g.dataset,
                        "metric": g.metric,
                        "value": _number(r[g.column]),
                        "source": f"{SOURCE_COMMITS['open_clip']}{file}",
                    }
                )
            p = prof.get(arch, {})
            models.append(
                {
                    "library": "open_clip",
                    "model_id": mid,
                    "name": f"open_clip:{arch}:{tag}",
                    "arch": arch,
                    "tag": tag,
                    "eval_size": _number(p.get("image_size", "")),
                    "license": "unknown",  # open_clip's pretrained configs record none
                    "pretrain": "",
                    "zero_shot": True,
                    "params_m": _number(p.get("image_mparams", r["params (M)"])),
                    "params_total_m": _number(r["params (M)"]),
                    "gmacs": _number(p.get("image_gflops", "")) / 2.0,
                    "input_size": _number(p.get("image_size", "")),
                    "crop_pct": np.nan,
                    "interpolation": "",
                    "throughput_gpu": np.nan,
                    "throughput_cpu": np.nan,
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(models).drop_duplicates("model_id")


# --------------------------------------------------------------------------- imagenet-testbed


def testbed_results(src: Path, settings: pd.DataFrame) -> pd.DataFrame:
    """imagenet-testbed's published top-1s (``results.csv``, %) as long rows (0-1) under this
    project's names (``rules/imagenet_testbed_settings.csv``), plus ImageNet-C's summaries
    derived from the per-corruption, per-severity numbers as this project scores ImageNet-C
    (:func:`beyond_inet.scoring.evaluations.imagenet_c_summary`: per corruption ``top1`` and
    ``ce``; ``imagenet-c`` ``top1`` and ``mean_ce`` when all 15 benchmark corruptions are
    there)."""
    from beyond_inet.reference import alexnet_imagenet_c_errors
    from beyond_inet.scoring.evaluations import imagenet_c_summary

    df = pd.read_csv(src / "results.csv").set_index("model")
    source = f"{SOURCE_COMMITS[TESTBED]}results.csv"
    parts = []
    for col in df.columns:
        for pattern, dataset, metric in settings[["pattern", "dataset", "metric"]].itertuples(
            index=False
        ):
            m = re.fullmatch(pattern, col)
            if m:
                v = df[col].dropna() / 100.0
                parts.append(
                    pd.DataFrame(
                        {
                            "model_id": v.index,
                            "dataset": m.expand(dataset),
                            "metric": metric,
                            "value": v.to_numpy(),
                            "source": f"{source} column {col}",
                        }
                    )
                )
                break
    rows = pd.concat(parts, ignore_index=True)
    per_severity = rows["dataset"].str.fullmatch(r"imagenet-c:[a-z_]+:[1-5]")
    benchmark = len(alexnet_imagenet_c_errors())
    derived = []
    for model, g in rows[per_severity].groupby("model_id", sort=False):
        acc: dict[str, dict[int, float]] = {}
        for name, value in zip(g["dataset"], g["value"], strict=True):
            _, corruption, severity = name.split(":")
            acc.setdefault(corruption, {})[int(severity)] = float(value)
        summary = imagenet_c_summary(acc)
        complete = any(
            v == "standard" and r.metric == "corruptions" and r.value == benchmark
            for v, r in summary
        )
        for view, r in summary:
            if view == "standard" and not (complete and r.metric in ("top1", "mean_ce")):
                continue
            derived.append(
                {
                    "model_id": model,
                    "dataset": "imagenet-c" if view == "standard" else f"imagenet-c:{view}",
                    "metric": r.metric,
                    "value": float(r.value),
                    "source": f"derived: {source} ImageNet-C on-disk columns, scored as "
                    "this project scores ImageNet-C",
                }
            )
    out = pd.concat([rows, pd.DataFrame(derived)], ignore_index=True)
    return out.assign(library=TESTBED)


def testbed_models(src: Path, types: pd.DataFrame, data_rules: pd.DataFrame) -> pd.DataFrame:
    """One model row per imagenet-testbed model (``library`` imagenet-testbed, ``name``
    ``imagenet-testbed:<model>``, not a name ``precompute`` can load): its architecture
    (``results_metadata.csv``), the testbed's model type (``model_types.csv``), training
    data from its name (``rules/training_data.csv``), else from its type
    (``rules/imagenet_testbed_types.csv``), zero-shot for its CLIP zero-shot models."""
    names = pd.read_csv(src / "results.csv", usecols=["model"])["model"]
    meta = pd.read_csv(src / "results_metadata.csv", usecols=["model", "arch"])
    arch = dict(zip(meta["model"], meta["arch"].fillna(""), strict=True))
    kinds = pd.read_csv(src / "model_types.csv", dtype=str)
    label = dict(zip(kinds["model"], kinds["model_type_label"], strict=True))
    kind = dict(zip(kinds["model"], kinds["model_type"], strict=True))
    by_type = dict(zip(types["model_type"], types["training_data"], strict=True))
    rows = []
    for m in names:
        data = first_match(m, data_rules, "training_data", "")
        rows.append(
            {
                "library": TESTBED,
                "model_id": m,
                "name": f"{TESTBED}:{m}",
                "arch": arch.get(m) or m,
                "tag": "",
                "eval_size": np.nan,
                "license": "unknown",
                "pretrain": "",
                "zero_shot": "zeroshot" in m,
                "params_m": np.nan,
                "params_total_m": np.nan,
                "gmacs": np.nan,
                "input_size": np.nan,
                "crop_pct": np.nan,
                "interpolation": "",
                "throughput_gpu": np.nan,
                "throughput_cpu": np.nan,
                "model_type": label.get(m, ""),
                "testbed_type": kind.get(m, ""),
                "training_data": data or by_type.get(kind.get(m, ""), "unknown"),
            }
        )
    return pd.DataFrame(rows)


def same_weights(
    testbed: pd.DataFrame, results: pd.DataFrame, candidates: pd.DataFrame
) -> dict[str, tuple[str, str]]:
    """testbed model -> (library, model_id) of the catalogue model with the same weights:
    named by a row of ``rules/imagenet_testbed_models.csv`` and within :data:`NAMED_VAL_GAP`
    on ImageNet val top-1, or by a ``*`` row (every model, ``{model}`` its name) and within
    :data:`SAME_WEIGHTS_VAL_GAP`. Each catalogue model takes at most one testbed model (the
    first named)."""
    val = results[(results["dataset"] == "imagenet-val") & (results["metric"] == "top1")]
    val = val.set_index(["library", "model_id"])["value"]
    tb_val = testbed[(testbed["dataset"] == "imagenet-val") & (testbed["metric"] == "top1")]
    tb_val = tb_val.set_index("model_id")["value"]
    out: dict[str, tuple[str, str]] = {}
    taken: set[tuple[str, str]] = set()
    for r in candidates.itertuples(index=False):
        models = tb_val.index if r.testbed_model == "*" else [r.testbed_model]
        for m in models:
            key = (r.library, r.model_id.format(model=m))
            if m in out or key in taken or m not in tb_val.index or key not in val.index:
                continue
            gap = SAME_WEIGHTS_VAL_GAP if r.testbed_model == "*" else NAMED_VAL_GAP
            if abs(float(val[key]) - float(tb_val[m])) <= gap:
                out[m] = key
                taken.add(key)
    return out


def add_testbed(
    results: pd.DataFrame, models: pd.DataFrame, src: Path, rules: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, models) with imagenet-testbed joined: a testbed model that is the same
    weights as a catalogue model (:func:`same_weights`) adds its numbers to that model's row
    for the (dataset, metric)s its own library does not publish, and its model type; every
    other testbed model is a row of its own."""
    tb_res = testbed_results(src, read_rules(rules, "imagenet_testbed_settings.csv"))
    tb_mod = testbed_models(
        src,
        read_rules(rules, "imagenet_testbed_types.csv"),
        read_rules(rules, "training_data.csv"),
    )
    mapping = same_weights(tb_res, results, read_rules(rules, "imagenet_testbed_models.csv"))
    mapped = tb_res["model_id"].isin(list(mapping))
    moved = tb_res[mapped].copy()
    moved[["library", "model_id"]] = [mapping[m] for m in moved["model_id"]]
    key = ["library", "model_id", "dataset", "metric"]
    have = set(results[key].itertuples(index=False, name=None))
    fresh = [k not in have for k in moved[key].itertuples(index=False, name=None)]
    results = pd.concat([results, moved[fresh], tb_res[~mapped]], ignore_index=True)
    label = dict(zip(tb_mod["model_id"], tb_mod["model_type"], strict=True))
    kind = dict(zip(tb_mod["model_id"], tb_mod["testbed_type"], strict=True))
    models = models.assign(model_type="", testbed_type="")
    for m, key in mapping.items():
        row = (models["library"] == key[0]) & (models["model_id"] == key[1])
        models.loc[row, ["model_type", "testbed_type"]] = [label[m], kind[m]]
        models.loc[row, "testbed_model"] = m
    own = tb_mod[~tb_mod["model_id"].isin(list(mapping))]
    return results, pd.concat([models, own], ignore_index=True)


# --------------------------------------------------------------------------- assembly


def paper_aliases() -> dict[str, str]:
    """Catalogue name -> the paper's model name (``timm:deit3_...`` -> ``deit3_21k``)."""
    from beyond_inet.models.base import PAPER_SPECS

    out = {}
    for s in PAPER_SPECS:
        name = f"timm:{s.arch}.{s.tag}" if s.family == "timm" else f"open_clip:{s.arch}:{s.tag}"
        out[name] = s.name
    return out


def is_baseline(models: pd.DataFrame, rule: pd.DataFrame) -> pd.Series:
    """Each model's membership of the baseline set: some ``set`` of the rule whose every
    listed field allows the model's value (``<field>!~`` rows: patterns it must not
    match)."""
    out = pd.Series(False, index=models.index)
    for _, one in rule.groupby("set", sort=False):
        keep = pd.Series(True, index=models.index)
        for field, allowed in one.groupby("field")["allowed"]:
            if field.endswith("!~"):  # a regular expression the value must not match
                values = models[field[:-2]].fillna("").astype(str)
                keep &= ~values.str.contains("|".join(allowed), regex=True)
            else:
                keep &= models[field].fillna("").astype(str).isin(set(allowed))
        out |= keep
    return out


def add_effective_robustness(
    results: pd.DataFrame, models: pd.DataFrame, rules: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the ``effective_robustness`` rows, the fits) for each shift dataset of ``rules``
    (``rules/effective_robustness.csv``): per dataset, its axes in order of preference; a
    model gets its effective robustness on the first axis it has a number on. The baseline
    models enter each fit once per weights (timm's second evaluation of a weight at another
    size, ``model_id`` with ``@``, is left out) and only from ``min_x`` on."""
    key = ["library", "model_id"]
    top1 = results[results["metric"] == "top1"].set_index([*key, "dataset"])["value"]
    base = models.set_index(key)["baseline"] & ~models.set_index(key).index.get_level_values(
        "model_id"
    ).str.contains("@")
    rows, fits = [], []
    for dataset, axes in rules.groupby("dataset", sort=False):
        ood = top1.xs(dataset, level="dataset")
        done: set[tuple[str, str]] = set()
        for r in axes.itertuples():
            x = top1.xs(r.axis, level="dataset")
            both = pd.concat({"x": x, "y": ood}, axis=1).dropna()
            min_x = float(r.min_x) if r.min_x else 0.0
            in_base = base.reindex(both.index).fillna(False).astype(bool) & (both["x"] >= min_x)
            pivot = float(r.pivot) if r.pivot else None
            fit = fit_baseline(dataset, both["x"][in_base], both["y"][in_base], r.axis, pivot)
            fits += [{**p.__dict__, "axis": r.axis} for p in fit.pieces]
            todo = both[[k not in done for k in both.index]]
            er = effective_robustness(fit, todo["x"].to_numpy(), todo["y"].to_numpy())
            for (lib, mid), v in zip(todo.index, er, strict=True):
                rows.append(
                    {
                        "library": lib,
                        "model_id": mid,
                        "dataset": dataset,
                        "metric": "effective_robustness",
                        "value": float(v),
                        "source": f"derived: {dataset} top1 minus the baseline fit on "
                        f"{r.axis} top1 ({FITS})",
                    }
                )
            done |= set(todo.index)
    columns = ["dataset", "axis", "x_low", "x_high", "slope", "intercept", "n", "resid_std"]
    return pd.DataFrame(rows), pd.DataFrame(fits)[columns]


def build(sources: Path, rules: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(results, models, fits) from the source CSVs and the rules."""
    dmap = read_rules(rules, "datasets.csv")
    t_res, t_mod = timm_tables(sources / "timm", dmap[dmap["library"] == "timm"])
    o_res, o_mod = open_clip_tables(sources / "open_clip", dmap[dmap["library"] == "open_clip"])
    results = pd.concat([t_res, o_res], ignore_index=True)
    models = pd.concat([t_mod, o_mod], ignore_index=True)
    data_rules = read_rules(rules, "training_data.csv")
    models["training_data"] = [
        first_match(t, data_rules, "training_data", "unknown") for t in models["tag"]
    ]
    results, models = add_testbed(results, models, sources / "imagenet_testbed", rules)
    families = read_rules(rules, "families.csv")
    models["family"] = [first_match(a, families, "family", "Other") for a in models["arch"]]
    models["baseline"] = is_baseline(models, read_rules(rules, "baseline.csv"))
    aliases = paper_aliases()
    models["paper_model"] = [
        aliases.get(n, "") if "@" not in m else ""
        for n, m in zip(models["name"], models["model_id"], strict=True)
    ]
    er_rules = read_rules(rules, "effective_robustness.csv")
    er_rows, fits = add_effective_robustness(results, models, er_rules)
    results = pd.concat([results, er_rows], ignore_index=True)
    results = results.sort_values(["library", "model_id", "dataset", "metric"], ignore_index=True)
    models = models[MODEL_COLUMNS].sort_values(["library", "model_id"], ignore_index=True)
    return results, models, fits


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build data/catalog from the published CSVs.")
    p.add_argument("--sources", type=Path, default=CATALOG_DIR / "sources")
    p.add_argument("--rules", type=Path, default=CATALOG_DIR / "rules")
    p.add_argument("--out", type=Path, default=CATALOG_DIR)
    args = p.parse_args(argv)
    results, models, fits = build(args.sources, args.rules)
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_parquet(args.out / RESULTS, index=False)
    models.to_parquet(args.out / MODELS, index=False)
    fits.to_csv(args.out / FITS, index=False, float_format="%.6f")
    print(
        f"{len(models)} models ({models['library'].value_counts().to_dict()}), "
        f"{len(results)} result rows, fits for {', '.join(fits['dataset'])} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
