"""Robustness datasets: label tables, finders, evaluations, and every synthetic layout end to
end through ``python -m precompute`` (tiny random model), plus the easyrobust oracle."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from beyond_inet import reference as R
from beyond_inet.datasets import DATASETS, DatasetLayoutError, discover
from beyond_inet.datasets import imagenet_c as C
from beyond_inet.records import ImageRecords
from beyond_inet.reference import imagenet_wnids
from beyond_inet.scoring.evaluations import EVALUATIONS, RUN_EVALUATIONS, ScoringOptions
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import TINY_TIMM, noise_image, write_flat_val

NO_BOOT = ScoringOptions(n_boot=0)
PUG_CLASSES = {"Goldfish": [1], "Cat": [282, 283, 284, 285], "Bridge": [821, 839]}


# --------------------------------------------------------------------------------------
# Synthetic layouts (tiny images, the real folder structures)
# --------------------------------------------------------------------------------------

#: easyrobust is the oracle here; CI installs it (--no-deps), a bare GPU image may not.
needs_easyrobust = pytest.mark.skipif(
    importlib.util.find_spec("easyrobust") is None,
    reason="needs easyrobust (the oracle; pip install --no-deps easyrobust==0.2.4)",
)


def _img(path: Path, rng: np.random.Generator, size: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    noise_image(rng, size, size + 8).save(path, format=fmt)


def write_imagenet_v2(root: Path, classes=(0, 1, 999), per_class: int = 2) -> None:
    """``<class index>/<hash>.jpeg``."""
    rng = np.random.default_rng(10)
    for c in classes:
        for i in range(per_class):
            _img(root / str(c) / f"{c:04d}{i}.jpeg", rng)


def write_imagenet_sketch(root: Path, wnids, per_class: int = 2, sketch_level: bool = True):
    rng = np.random.default_rng(11)
    base = root / "sketch" if sketch_level else root
    for w in wnids:
        for i in range(per_class):
            _img(base / w / f"sketch_{i}.JPEG", rng)


def write_wnid_folders(root: Path, wnids, per_class: int = 2, seed: int = 12) -> None:
    """ImageNet-R / -A style ``<wnid>/*.jpg``."""
    rng = np.random.default_rng(seed)
    for w in wnids:
        for i in range(per_class):
            _img(root / w / f"{w}_{i}.jpg", rng)


def write_imagenet_c(root: Path, corruptions, severities=(1, 2, 3, 4, 5), wnid="n01440764"):
    """``<corruption>/<severity>/<wnid>/*.JPEG`` with one image per (corruption, severity)."""
    rng = np.random.default_rng(13)
    for c in corruptions:
        for s in severities:
            _img(root / c / str(s) / wnid / f"ILSVRC2012_val_0000000{s}.JPEG", rng, 32)


def write_imagenet_hard(root: Path) -> list[dict]:
    """Images + ``metadata.jsonl`` (file_name, label list, origin)."""
    rng = np.random.default_rng(14)
    recs = [
        {"file_name": f"images/{i}.jpg", "label": labels, "origin": origin}
        for i, (labels, origin) in enumerate(
            [([1, 2], "imagenet"), ([3], "imagenet_a"), ([4, 5, 6], "imagenet"), ([7], "objectnet")]
        )
    ]
    for r in recs:
        _img(root / r["file_name"], rng)
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return recs


PUG_FACTORS_USED = ("Camera_Yaw", "Scene_Light", "Worlds")


def write_pug_imagenet(root: Path, with_csv: bool = True) -> None:
    """``<factor>/<PUG class>/*.png`` + class_to_imagenet_idx.json (+ labels CSV)."""
    rng = np.random.default_rng(15)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "class_to_imagenet_idx.json").write_text(json.dumps(PUG_CLASSES))
    rows = ["filename,world_name,character_label,camera_yaw,scene_light"]
    for factor in PUG_FACTORS_USED:
        for j, cls in enumerate(PUG_CLASSES):
            for k in range(2):
                name = f"{factor.lower()}_{cls}_{k}.png"
                _img(root / factor / cls / name, rng, 40)
                rows.append(f"{name},World{k},{cls},{[0, 90][k] + j},{0.5 * (k + 1)}")
    if with_csv:
        (root / "labels_pug_imagenet.csv").write_text("\n".join(rows) + "\n")


R_WNIDS = [imagenet_wnids()[i] for i in R.imagenet_r_indices()[:3]]
A_WNIDS = [imagenet_wnids()[i] for i in R.imagenet_a_indices()[:2]]
C_USED = ("gaussian_noise", "fog", "speckle_noise")  # speckle_noise: an extra, no baseline


@pytest.fixture(scope="module")
def robust_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robust")
    write_flat_val(root / "imagenet" / "val", 6)
    write_imagenet_v2(root / "imagenetv2-matched-frequency")
    write_imagenet_sketch(root / "imagenet-sketch", imagenet_wnids()[:2])
    write_wnid_folders(root / "imagenet-r", R_WNIDS)
    write_wnid_folders(root / "imagenet-a", A_WNIDS)
    write_imagenet_c(root / "imagenet-c", C_USED)
    write_imagenet_hard(root / "imagenet-hard")
    write_pug_imagenet(root / "pug-imagenet")
    return root


@pytest.fixture(scope="module")
def robust_store(robust_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = tmp_path_factory.mktemp("rstore") / "results.duckdb"
    rc = main(
        [
            "--model",
            TINY_TIMM,
            "--data-root",
            str(robust_root),
            "--store",
            str(store),
            "--random-weights",
            "--workers",
            "0",
            "--bootstrap",
            "0",
            "--quiet",
        ]
    )
    assert rc == 0
    return Store(store)


def _metrics(store: Store, dataset: str) -> dict[tuple[str, str], float]:
    df = store.query("SELECT view, metric, value FROM metrics WHERE dataset = ?", [dataset])
    return {(v, m): x for v, m, x in zip(df["view"], df["metric"], df["value"], strict=True)}


# --------------------------------------------------------------------------------------
# Label tables against independent sources
# --------------------------------------------------------------------------------------


@needs_easyrobust
def test_r_and_a_class_lists_match_timm_synsets_and_easyrobust() -> None:
    from easyrobust.benchmarks.ood.imagenet_r import all_wnids, imagenet_r_mask

    wnids = imagenet_wnids()
    assert list(all_wnids) == list(wnids)
    assert R.imagenet_r_indices() == tuple(i for i, m in enumerate(imagenet_r_mask) if m)
    a = R.imagenet_a_indices()
    assert len(a) == 200 and len(set(a)) == 200 and a == tuple(sorted(a))
    synsets = R._timm_info("imagenet_a_synsets.txt").split()
    assert [wnids[i] for i in a] == synsets


@needs_easyrobust
def test_alexnet_table_matches_easyrobust_means() -> None:
    from easyrobust.benchmarks.ood.imagenet_c import data_loaders_names, get_ce_alexnet

    table = R.alexnet_imagenet_c_errors()
    assert len(table) == 15 and all(sorted(v) == [1, 2, 3, 4, 5] for v in table.values())
    for pretty, err in get_ce_alexnet().items():
        folder = data_loaders_names[pretty]
        assert sum(table[folder].values()) / 5 == pytest.approx(err, abs=1e-6)


@needs_easyrobust
def test_mce_matches_easyrobust_formula() -> None:
    from easyrobust.benchmarks.ood.imagenet_c import (
        data_loaders_names,
        get_ce_alexnet,
        get_mce_from_accuracy,
    )

    rng = np.random.default_rng(0)
    acc = {
        c: {s: float(rng.uniform(0.2, 0.9)) for s in range(1, 6)}
        for c in R.alexnet_imagenet_c_errors()
    }
    ce = C.corruption_errors({c: {s: 1 - a for s, a in by.items()} for c, by in acc.items()})
    base = get_ce_alexnet()
    for pretty, folder in data_loaders_names.items():
        expected = get_mce_from_accuracy(100 * np.mean(list(acc[folder].values())), base[pretty])
        assert ce[folder] == pytest.approx(expected, rel=1e-5)
    assert C.mean_corruption_error(ce) == pytest.approx(np.mean(list(ce.values())))
    assert math.isnan(C.mean_corruption_error({}))


def test_real_labels_come_from_timm() -> None:
    real = R.real_labels()
    assert len(real) == 50_000
    assert real["ILSVRC2012_val_00000001.JPEG"] == ()  # no ReaL label: excluded
    assert real["ILSVRC2012_val_00000002.JPEG"] == (970, 795)


# --------------------------------------------------------------------------------------
# Evaluations on hand-made predictions
# --------------------------------------------------------------------------------------


def _vp(ids, labels, pred, correct=None, pred_full=None, factor=None) -> ImageRecords:
    n = len(ids)
    labels, pred = np.array(labels), np.array(pred)
    return ImageRecords(
        sample_id=np.array(ids, dtype=object),
        label=labels,
        pred=pred,
        confidence=np.full(n, 0.5),
        p_true=np.full(n, 0.5),
        correct=(pred == labels) if correct is None else np.array(correct),
        topk_idx=np.repeat(pred[:, None], 5, 1),
        topk_prob=np.full((n, 5), 0.1),
        brier=np.full(n, 0.3),
        pred_full=None if pred_full is None else np.array(pred_full),
        factor_value=None if factor is None else np.array(factor, dtype=object),
    )


def test_top1_real_uses_the_real_sets_and_skips_unlabelled_images() -> None:
    ids = [
        "ILSVRC2012_val_00000001.JPEG",
        "n01/ILSVRC2012_val_00000002.JPEG",
        "ILSVRC2012_val_00000003.JPEG",
        "ILSVRC2012_val_00000004.JPEG",
    ]
    real = R.real_labels()
    preds = [5, 795, real["ILSVRC2012_val_00000003.JPEG"][0], 999]
    rows = {r.metric: r.value for r in EVALUATIONS.get("real")(_vp(ids, [0] * 4, preds), NO_BOOT)}
    assert real["ILSVRC2012_val_00000004.JPEG"] and 999 not in real["ILSVRC2012_val_00000004.JPEG"]
    assert rows == {"top1_real": pytest.approx(2 / 3), "real_images": 3}


def test_top1_1000way() -> None:
    p = _vp(["a", "b", "c"], [3, 4, -1], [3, 4, 1], pred_full=[3, 9, 1])
    (row,) = EVALUATIONS.get("accuracy_1000way")(p, NO_BOOT)
    assert (row.metric, row.value) == ("top1_1000way", 0.5)


def test_factor_values_in_numeric_order() -> None:
    p = _vp(list("abcde"), [1] * 5, [1, 0, 1, 1, 0], factor=["90", "10", "10", None, "9.5"])
    rows = EVALUATIONS.get("factor_values")(p, NO_BOOT)
    assert [(r.metric, r.value) for r in rows] == [
        ("top1_at:9.5", 0.0),
        ("top1_at:10", 0.5),
        ("top1_at:90", 1.0),
    ]


def test_imagenet_c_run_evaluation() -> None:
    views = {
        "fog:1": _vp(["a", "b"], [1, 1], [1, 1]),
        "fog:2": _vp(["c", "d"], [1, 1], [1, 0]),
        "speckle_noise:1": _vp(["e"], [1], [0]),
    }
    rows = {(v, r.metric): r.value for v, r in RUN_EVALUATIONS.get("imagenet_c")(views, NO_BOOT)}
    base = R.alexnet_imagenet_c_errors()["fog"]
    ce = (0.0 + 0.5) / (base[1] + base[2])
    assert rows[("fog", "top1")] == 0.75 and rows[("speckle_noise", "top1")] == 0.0
    assert rows[("fog", "ce")] == pytest.approx(ce)
    assert ("speckle_noise", "ce") not in rows  # no AlexNet baseline
    # the paper's number: the 15 benchmark corruptions only; the extras on their own
    assert rows[("standard", "top1")] == pytest.approx((1 + 0.5) / 2)
    assert rows[("standard", "top1_extra")] == 0.0 and rows[("standard", "extra_corruptions")] == 1
    assert rows[("standard", "mean_ce")] == pytest.approx(ce)
    assert rows[("standard", "corruptions")] == 1
    assert ("standard", "mce") not in rows  # mce is the max calibration error, never the mCE


# --------------------------------------------------------------------------------------
# Finders
# --------------------------------------------------------------------------------------


def test_finders_label_and_group_samples(robust_root: Path) -> None:
    v2 = discover(DATASETS.get("imagenet-v2"), robust_root / "imagenetv2-matched-frequency")
    assert sorted({s.label for s in v2.samples}) == [0, 1, 999]
    sk = discover(DATASETS.get("imagenet-sketch"), robust_root / "imagenet-sketch")
    assert {s.label for s in sk.samples} == {0, 1}
    assert sk.samples[0].sample_id.startswith("sketch/n01440764/")
    r = discover(DATASETS.get("imagenet-r"), robust_root / "imagenet-r")
    assert {s.label for s in r.samples} == set(R.imagenet_r_indices()[:3])
    c = discover(DATASETS.get("imagenet-c"), robust_root / "imagenet-c")
    assert len(c.samples) == 15 and {s.label for s in c.samples} == {0}
    assert {s.group for s in c.samples} == {f"{x}:{s}" for x in C_USED for s in range(1, 6)}
    hard = discover(DATASETS.get("imagenet-hard"), robust_root / "imagenet-hard")
    assert [s.alt_labels for s in hard.samples] == [(1, 2), (3,), (4, 5, 6), (7,)]
    assert hard.samples[1].factor_value == "imagenet_a"
    pug = discover(DATASETS.get("pug-imagenet"), robust_root / "pug-imagenet")
    assert len(pug.samples) == 18
    cat = next(s for s in pug.samples if s.sample_id == "Camera_Yaw/Cat/camera_yaw_Cat_1.png")
    assert (cat.group, cat.label, cat.alt_labels) == ("Camera_Yaw", 282, (282, 283, 284, 285))
    assert cat.factor_value == "91"  # camera_yaw column of its CSV row
    light = next(s for s in pug.samples if s.group == "Scene_Light")
    assert light.factor_value in {"0.5", "1.0"}


def test_sketch_without_the_sketch_level(tmp_path: Path) -> None:
    write_imagenet_sketch(tmp_path, ["n01440764"], sketch_level=False)
    found = discover(DATASETS.get("imagenet-sketch"), tmp_path)
    assert found.samples[0].sample_id == "n01440764/sketch_0.JPEG"


def test_layout_errors_name_the_problem(tmp_path: Path) -> None:
    outside_r = next(w for i, w in enumerate(imagenet_wnids()) if i not in R.imagenet_r_indices())
    write_wnid_folders(tmp_path / "r", [outside_r], per_class=1)
    with pytest.raises(DatasetLayoutError, match="not one of the dataset's ImageNet classes"):
        discover(DATASETS.get("imagenet-r"), tmp_path / "r")
    write_pug_imagenet(tmp_path / "pug", with_csv=False)
    (tmp_path / "pug" / "class_to_imagenet_idx.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"class_to_imagenet_idx\.json"):
        discover(DATASETS.get("pug-imagenet"), tmp_path / "pug")
    (tmp_path / "hard").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"metadata\.jsonl"):
        discover(DATASETS.get("imagenet-hard"), tmp_path / "hard")


# --------------------------------------------------------------------------------------
# End to end through the CLI
# --------------------------------------------------------------------------------------


def test_every_layout_lands_in_the_store(robust_store: Store) -> None:
    runs = robust_store.query("SELECT dataset, n_samples FROM runs ORDER BY dataset")
    assert dict(zip(runs["dataset"], runs["n_samples"], strict=True)) == {
        "imagenet-a": 4,
        "imagenet-c": 15,
        "imagenet-hard": 4,
        "imagenet-r": 6,
        "imagenet-sketch": 4,
        "imagenet-v2": 6,
        "imagenet-val": 6,
        "pug-imagenet": 18,
    }
    calib = {"top1", "top5", "p_true_mean", "ece", "mce", "nll", "brier"}
    for ds in ("imagenet-v2", "imagenet-sketch", "imagenet-hard", "imagenet-r", "imagenet-a"):
        m = _metrics(robust_store, ds)
        assert calib <= {k for v, k in m if v == "standard"}, ds


def test_r_and_a_use_the_200_class_subset(robust_store: Store) -> None:
    for ds, indices in (
        ("imagenet-r", R.imagenet_r_indices()),
        ("imagenet-a", R.imagenet_a_indices()),
    ):
        p = robust_store.query("SELECT pred, topk_idx FROM predictions WHERE dataset = ?", [ds])
        allowed = set(indices)
        assert set(p["pred"]) <= allowed
        assert all(set(t) <= allowed for t in p["topk_idx"])
        assert ("standard", "top1_1000way") in _metrics(robust_store, ds)


def test_real_metrics_on_imagenet_val(robust_store: Store) -> None:
    m = _metrics(robust_store, "imagenet-val")
    p = robust_store.query(
        "SELECT sample_id, pred FROM predictions WHERE dataset = 'imagenet-val' "
        "AND view = 'standard'"
    )
    real = R.real_labels()
    keep = [(pred, real[s]) for s, pred in zip(p["sample_id"], p["pred"], strict=True) if real[s]]
    assert m[("standard", "real_images")] == len(keep) > 0
    assert m[("standard", "top1_real")] == pytest.approx(np.mean([x in s for x, s in keep]))


def test_imagenet_c_views_and_mce_in_the_store(robust_store: Store) -> None:
    m = _metrics(robust_store, "imagenet-c")
    views = set(
        robust_store.query("SELECT DISTINCT view FROM predictions WHERE dataset = 'imagenet-c'")[
            "view"
        ]
    )
    assert views == {f"{c}:{s}" for c in C_USED for s in range(1, 6)}
    for c in C_USED:
        top = [m[(f"{c}:{s}", "top1")] for s in range(1, 6)]
        assert m[(c, "top1")] == pytest.approx(np.mean(top))
        assert (f"{c}:3", "ece") in m
    base = R.alexnet_imagenet_c_errors()
    ce = {
        c: sum(1 - m[(f"{c}:{s}", "top1")] for s in range(1, 6)) / sum(base[c].values())
        for c in ("gaussian_noise", "fog")
    }
    assert m[("fog", "ce")] == pytest.approx(ce["fog"])
    assert m[("standard", "mean_ce")] == pytest.approx(np.mean(list(ce.values())))
    assert m[("standard", "corruptions")] == 2
    assert ("standard", "mce") not in m
    bench = [m[(f"{c}:{s}", "top1")] for c in ("gaussian_noise", "fog") for s in range(1, 6)]
    assert m[("standard", "top1")] == pytest.approx(np.mean(bench))  # extras left out
    extra = [m[(f"speckle_noise:{s}", "top1")] for s in range(1, 6)]
    assert m[("standard", "top1_extra")] == pytest.approx(np.mean(extra))


def test_pug_factor_views_and_value_curves(robust_store: Store) -> None:
    m = _metrics(robust_store, "pug-imagenet")
    p = robust_store.query("SELECT * FROM predictions WHERE dataset = 'pug-imagenet'")
    assert set(p["view"]) == set(PUG_FACTORS_USED)
    inverse = {i: cls for cls, idx in PUG_CLASSES.items() for i in idx}
    expected = [
        inverse.get(int(pred)) == sid.split("/")[1]
        for pred, sid in zip(p["pred"], p["sample_id"], strict=True)
    ]
    assert p["correct"].tolist() == expected
    assert {f"top1_at:{v}" for v in ("0", "1", "2", "90", "91", "92")} == {
        k for v, k in m if v == "Camera_Yaw" and k.startswith("top1_at:")
    }
    assert ("Scene_Light", "top1_at:0.5") in m and ("Worlds", "top1_at:World1") in m
    assert ("standard", "top1") not in m  # one view per factor subset, no pooled view


def test_imagenet_hard_any_label_counts(robust_store: Store) -> None:
    p = robust_store.query(
        "SELECT sample_id, pred, correct FROM predictions "
        "WHERE dataset = 'imagenet-hard' ORDER BY sample_id"
    )
    labels = {f"images/{i}.jpg": s for i, s in enumerate([{1, 2}, {3}, {4, 5, 6}, {7}])}
    assert p["correct"].tolist() == [
        int(x) in labels[s] for s, x in zip(p["sample_id"], p["pred"], strict=True)
    ]
    assert any(k.startswith("top1_at:") for _, k in _metrics(robust_store, "imagenet-hard"))


# --------------------------------------------------------------------------------------
# Oracle: easyrobust's evaluate_imagenet_r on the same model and images
# --------------------------------------------------------------------------------------


def _our_transform(pp):  # type: ignore[no-untyped-def]
    from beyond_inet.datasets.decode import pil_to_tensor, to_rgb
    from beyond_inet.transforms.preprocess import standard_transform

    return lambda im: standard_transform(pil_to_tensor(to_rgb(im)), pp)


@needs_easyrobust
def test_top1_matches_easyrobust_evaluate_imagenet_r(tmp_path: Path) -> None:
    from easyrobust.benchmarks import evaluate_imagenet_r

    from beyond_inet.models import LoadOptions, WeightsSource, load_model
    from beyond_inet.run.engine import RunSettings, run_pass
    from beyond_inet.run.outputs import image_records
    from beyond_inet.scoring.evaluations import accuracy

    # ImageFolder numbers the folders 0..k-1; with the FIRST k of the 200 (sorted) wnids
    # those are their positions in easyrobust's 200-class mask, so its labels are right.
    wnids = [imagenet_wnids()[i] for i in R.imagenet_r_indices()[:4]]
    write_wnid_folders(tmp_path, wnids, per_class=4, seed=3)
    model = load_model(TINY_TIMM, LoadOptions(weights=WeightsSource("random")))
    head, first = model.module.net.head, list(R.imagenet_r_indices()[:4])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the 4 classes' logits vary by image; a non-R class (0) wins
        head.weight.zero_()  # the 1000-way argmax everywhere
        head.bias.fill_(-10.0)
        head.weight[first] = 3 * torch.randn(4, head.in_features, generator=gen)
        head.bias[first] = 0.0
        head.bias[0] = 1000.0
    found = discover(DATASETS.get("imagenet-r"), tmp_path)
    out = run_pass(found, [model], RunSettings(batch_size=8, workers=0, progress=False))
    vp = image_records(found, out.outputs[(model.name, "standard")], None)
    ours = {r.metric: r.value for r in accuracy(vp, NO_BOOT)}["top1"]
    theirs = evaluate_imagenet_r(
        model.module,
        str(tmp_path),
        test_batchsize=8,
        test_transform=_our_transform(model.preprocessing),
    )
    assert 0 < ours < 1  # a non-trivial accuracy, so the comparison can fail
    assert 100 * ours == pytest.approx(theirs, abs=1e-6)
    assert (vp.pred_full == 0).all()  # the 1000-way argmax is the non-R class
