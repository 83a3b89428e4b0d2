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
    RESULTS,
    effective_robustness,
    fit_baseline,
)

#: Source commits of the copied files (see data/catalog/README.md).
SOURCE_COMMITS = {
    "timm": "huggingface/pytorch-image-models@aa4b5850c154 results/",
    "open_clip": "mlfoundations/open_clip@89fb801f1e60 docs/",
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
    """Each model's membership of the baseline set (every listed field allowed)."""
    keep = pd.Series(True, index=models.index)
    for field, allowed in rule.groupby("field")["allowed"]:
        keep &= models[field].astype(str).isin(set(allowed))
    return keep


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
    families = read_rules(rules, "families.csv")
    data_rules = read_rules(rules, "training_data.csv")
    models["family"] = [first_match(a, families, "family", "Other") for a in models["arch"]]
    models["training_data"] = [
        first_match(t, data_rules, "training_data", "unknown") for t in models["tag"]
    ]
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
