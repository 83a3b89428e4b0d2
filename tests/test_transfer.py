"""Transfer: task layouts on generated folders, the VTAB-1k splits, and the probe of a
precompute run against an independent scikit-learn fit on directly computed features."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from beyond_inet.datasets import DatasetLayoutError
from beyond_inet.datasets.transfer import (
    SPLIT_PROTOCOLS,
    SPLITS,
    TASKS,
    SplitProtocol,
    expand_tasks,
    load_task,
)
from beyond_inet.registry import UnknownNameError
from beyond_inet.store import Store
from tests.conftest import REPO
from tests.trained import class_image

CLASSES = ("banded", "dotted", "striped")


def _png(path: Path, c: int, rng: np.random.Generator, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(class_image(c * 3, rng, size, size)).save(path)


def write_folder_task(root: Path, per_split: dict[str, int], seed: int = 0) -> Path:
    """``root/{train,val,test}/<class>/*.png`` with ``per_split[s]`` images per class."""
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for c, name in enumerate(CLASSES):
            for k in range(n):
                _png(root / split / name / f"{name}_{k:03d}.png", c, rng)
    return root


# --------------------------------------------------------------------------- protocol


def test_vtab_1k_draws_800_and_200_with_a_fixed_seed() -> None:
    p = SPLIT_PROTOCOLS.get("vtab-1k")
    train, val = p.split_pool(5000)
    perm = np.random.default_rng(0).permutation(5000)  # the documented draw
    np.testing.assert_array_equal(train, np.sort(perm[:800]))
    np.testing.assert_array_equal(val, np.sort(perm[800:1000]))
    assert len(train) == 800 and len(val) == 200 and not set(train) & set(val)
    again = SPLIT_PROTOCOLS.get("vtab-1k").split_pool(5000)
    np.testing.assert_array_equal(again[0], train)
    small_train, small_val = p.split_pool(50)  # a pool below 1,000 keeps 80 / 20
    assert (len(small_train), len(small_val)) == (40, 10)
    full_train, full_val = SPLIT_PROTOCOLS.get("full").split_pool(5000)
    assert (len(full_train), len(full_val)) == (4500, 500)
    pool, test = p.split_test(1000)
    assert len(test) == 200 and len(pool) == 800 and not set(pool) & set(test)


def test_the_19_vtab_tasks_and_their_groups() -> None:
    assert len(TASKS) == 19
    groups = [t.group for t in expand_tasks(["all"])]
    assert (groups.count("natural"), groups.count("specialized"), groups.count("structured")) == (
        7,
        4,
        8,
    )
    assert [t.name for t in expand_tasks(["specialized"])] == [
        "camelyon",
        "eurosat",
        "resisc45",
        "retinopathy",
    ]
    with pytest.raises(UnknownNameError, match="Did you mean 'cifar100'"):
        expand_tasks(["cifar10"])


# --------------------------------------------------------------------------- layouts


def test_folder_layout(tmp_path: Path) -> None:
    write_folder_task(tmp_path / "vtab" / "dtd", {"train": 6, "val": 2, "test": 3})
    td = load_task(TASKS.get("dtd"), tmp_path, SplitProtocol("t", train=16, val=8))
    assert td is not None and td.source == "folders"
    assert td.classes == CLASSES
    assert {s: len(d.samples) for s, d in td.splits.items()} == {"train": 16, "val": 8, "test": 9}
    test = td.splits["test"].samples
    assert test[0].sample_id == "test/banded/banded_000.png" and test[0].label == 0
    assert {s.label for s in test} == {0, 1, 2}
    pool = {s.sample_id for s in td.splits["train"].samples + td.splits["val"].samples}
    assert len(pool) == 24 and all(i.startswith(("train/", "val/")) for i in pool)


def test_csv_layout_and_its_errors(tmp_path: Path) -> None:
    task = tmp_path / "vtab" / "resisc45"
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 2)):
        lines = ["path,label"]
        for c in range(3):
            for k in range(n):
                rel = f"images/{split}_{c}_{k}.png"
                _png(task / rel, c, rng)
                lines.append(f"{rel},{c}")
        (task / f"{split}.csv").write_text("\n".join(lines) + "\n")
    td = load_task(TASKS.get("resisc45"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    assert td is not None and td.source == "csv" and td.classes == ("0", "1", "2")
    assert len(td.splits["test"].samples) == 6
    assert len(td.splits["train"].samples) + len(td.splits["val"].samples) == 15
    (task / "test.csv").write_text("file,label\nimages/x.png,0\n")
    with pytest.raises(DatasetLayoutError, match="path,label"):
        load_task(TASKS.get("resisc45"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    (task / "test.csv").write_text("path,label\nimages/missing.png,0\n")
    with pytest.raises(DatasetLayoutError, match=r"missing\.png does not exist"):
        load_task(TASKS.get("resisc45"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))


def _write_lists(
    task: Path, sizes: dict[str, int], rng: np.random.Generator
) -> dict[str, list[str]]:
    """A VTAB-1k list export: images in a shuffled (non-class-sorted) order, as TFDS has."""
    out = {}
    for split, n in sizes.items():
        lines = []
        for k in range(n):
            c = int(rng.integers(0, 3))
            rel = f"images/{split}_{k:04d}.png"
            _png(task / rel, c, rng)
            lines.append(f"{rel} {c}")
        name = {"train": "train800.txt", "val": "val200.txt", "test": "test.txt"}[split]
        (task / name).write_text("\n".join(lines) + "\n")
        out[split] = [ln.split()[0] for ln in lines]
    return out


def test_vtab_1k_uses_the_fixed_splits_of_a_list_export(tmp_path: Path) -> None:
    """VTAB-1k's train800 / val200 / test lists are used as given, in their order."""
    task = tmp_path / "vtab" / "dmlab"
    written = _write_lists(task, {"train": 12, "val": 4, "test": 5}, np.random.default_rng(3))
    td = load_task(TASKS.get("dmlab"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    assert td is not None and (td.source, td.split_rule) == ("lists", "fixed")
    for split in SPLITS:
        assert [s.sample_id for s in td.splits[split].samples] == written[split]
    (task / "test.txt").write_text("images/test_0000.png\n")
    with pytest.raises(DatasetLayoutError, match="expected '<path> <label index>'"):
        load_task(TASKS.get("dmlab"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))


def test_vtab_1k_takes_the_first_rows_of_a_csv_export_with_val(tmp_path: Path) -> None:
    """train.csv[:800] and val.csv[:200]: VTAB's train[:800] / validation[:200] on the
    export's order (here 3 / 2 of a smaller protocol), not a draw; without val.csv, and for
    class-sorted folders, the seeded draw (and the run says so)."""
    task = tmp_path / "vtab" / "resisc45"
    rng = np.random.default_rng(1)
    order: dict[str, list[str]] = {}
    for split, n in (("train", 7), ("val", 4), ("test", 3)):
        lines, ids = ["path,label"], []
        for k in range(n):
            c = (k * 2) % 3
            rel = f"images/{split}_{k}.png"
            _png(task / rel, c, rng)
            lines.append(f"{rel},{c}")
            ids.append(rel)
        (task / f"{split}.csv").write_text("\n".join(lines) + "\n")
        order[split] = ids
    protocol = SplitProtocol("vtab-1k", train=3, val=2, fixed=True)
    td = load_task(TASKS.get("resisc45"), tmp_path, protocol)
    assert td is not None and td.split_rule == "fixed"
    assert [s.sample_id for s in td.splits["train"].samples] == order["train"][:3]
    assert [s.sample_id for s in td.splits["val"].samples] == order["val"][:2]
    # written class by class, the first rows are one class: not VTAB's order, so drawn
    rows = (task / "train.csv").read_text().splitlines()
    by_class = [rows[0], *sorted(rows[1:], key=lambda r: r.split(",")[1])]
    (task / "train.csv").write_text("\n".join(by_class) + "\n")
    td = load_task(TASKS.get("resisc45"), tmp_path, protocol)
    assert td is not None and td.split_rule == "seeded"
    (task / "val.csv").unlink()
    td = load_task(TASKS.get("resisc45"), tmp_path, protocol)
    assert td is not None and td.split_rule == "seeded"
    write_folder_task(tmp_path / "vtab" / "dtd", {"train": 6, "val": 2, "test": 3})
    td = load_task(TASKS.get("dtd"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    assert td is not None and (td.source, td.split_rule) == ("folders", "seeded")


def test_absent_and_unusable_task_folders(tmp_path: Path) -> None:
    assert load_task(TASKS.get("dmlab"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k")) is None
    (tmp_path / "vtab" / "dmlab").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="neither"):
        load_task(TASKS.get("dmlab"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    (tmp_path / "vtab" / "cifar100").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="torchvision CIFAR100"):
        load_task(TASKS.get("cifar100"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))


def write_torchvision_dtd(task_root: Path, per_class: int = 4) -> None:
    """torchvision's DTD layout: ``dtd/dtd/images/<class>/*.jpg`` and
    ``dtd/dtd/labels/{train,val,test}1.txt`` listing ``<class>/<file>``."""
    base = task_root / "dtd" / "dtd"
    rng = np.random.default_rng(5)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, name in enumerate(CLASSES):
        for k in range(per_class * 3):
            rel = f"{name}/{name}_{k:04d}.jpg"
            (base / "images" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(class_image(c * 3, rng, 48, 48)).save(base / "images" / rel)
            lists[("train", "val", "test")[k % 3]].append(rel)
    (base / "labels").mkdir(parents=True)
    for split, rels in lists.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(rels) + "\n")


def test_torchvision_layout_dtd(tmp_path: Path) -> None:
    write_torchvision_dtd(tmp_path / "vtab" / "dtd")
    td = load_task(TASKS.get("dtd"), tmp_path, SPLIT_PROTOCOLS.get("vtab-1k"))
    assert td is not None and td.source == "torchvision"
    assert td.classes == CLASSES
    assert len(td.splits["test"].samples) == 12
    assert len(td.splits["train"].samples) + len(td.splits["val"].samples) == 24
    s = td.splits["test"].samples[0]
    img = td.splits["test"].reader(s)
    import torchvision.datasets as tvd

    direct = tvd.DTD(str(td.root), split="test")
    assert np.array_equal(np.asarray(img), np.asarray(direct[0][0]))
    assert s.label == CLASSES.index(direct.classes[direct[0][1]])


# --------------------------------------------------------------------------- the probe


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _features_direct(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    """Pre-logits features by timm's own transform and forward (the oracle)."""
    import timm.data

    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    with torch.inference_mode():
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


def _scipy_fit(x: np.ndarray, y: np.ndarray, c: float, n_classes: int) -> np.ndarray:
    """The oracle: minimise C * sum CE + 0.5 ||W||^2 (bias free) with scipy's L-BFGS-B on
    the loss written out here; returns a function of features -> class probabilities."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    classes = np.unique(y)
    k, d = len(classes), x.shape[1]
    t = np.searchsorted(classes, y)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        z = x @ w.T + b
        lse = logsumexp(z, axis=1)
        p = np.exp(z - lse[:, None])
        p[np.arange(len(t)), t] -= 1.0
        grad = np.r_[(c * p.T @ x + w).ravel(), c * p.sum(0)]
        return c * float(np.sum(lse - z[np.arange(len(t)), t])) + 0.5 * float(np.sum(w * w)), grad

    opts = {"maxiter": 200_000, "gtol": 1e-12, "ftol": 1e-16, "maxcor": 30}
    res = minimize(objective, np.zeros(k * d + k), jac=True, method="L-BFGS-B", options=opts)
    return res.x.reshape(-1), classes, (k, d)  # type: ignore[return-value]


def _oracle_probs(fit: tuple, x: np.ndarray, n_classes: int) -> np.ndarray:  # type: ignore[type-arg]
    from scipy.special import softmax

    theta, classes, (k, d) = fit
    z = x @ theta[: k * d].reshape(k, d).T + theta[k * d :]
    out = np.zeros((len(x), n_classes))
    out[:, classes] = softmax(z, axis=1)
    return out


def _oracle_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test_x: np.ndarray,
    n_classes: int,
) -> tuple[float, np.ndarray]:
    """The probe's protocol written out: val top-1 over 10^-6..10^6 (one per decade), then 7
    log-spaced values between the best one's neighbours, the best (smallest on ties), a
    refit on train + val; with the scipy oracle for every fit."""

    def score(c: float) -> float:
        fit = _scipy_fit(*train, c, n_classes)
        return float(np.mean(_oracle_probs(fit, val[0], n_classes).argmax(1) == val[1]))

    coarse = [10.0**k for k in range(-6, 7)]
    scores = {c: score(c) for c in coarse}
    top = max(scores.values())
    i = coarse.index(min(c for c in coarse if scores[c] == top))
    lo, hi = coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]
    for c in np.exp(np.linspace(np.log(lo), np.log(hi), 9))[1:-1]:
        if not np.isclose(c, coarse[i], rtol=1e-12):
            scores[float(c)] = score(float(c))
    top = max(scores.values())
    best = min(c for c, v in scores.items() if v == top)
    xa, ya = np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])
    return best, _oracle_probs(_scipy_fit(xa, ya, best, n_classes), test_x, n_classes)


def _separable_features(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    x = centers[y] * 0.5 + rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def test_the_probe_reaches_its_objectives_optimum_and_the_oracles_choice() -> None:
    from sklearn.linear_model import LogisticRegression  # only to read the fitted weights

    from beyond_inet.scoring.probe import ProbeSettings, _Solver, fit_probe

    x, y = _separable_features(300, 12, 4, seed=0)
    for c in (1e-3, 1.0, 1e3, 1e6):
        ours = _Solver(ProbeSettings()).fit(x, y, c)  # from zero
        oracle = _scipy_fit(x, y, c, 4)
        theta = np.r_[ours.coef_.ravel(), ours.intercept_]

        def objective(t: np.ndarray, c: float = c) -> float:
            z = x @ t[:48].reshape(4, 12).T + t[48:]
            lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
            return c * float(np.sum(lse - z[np.arange(len(y)), y])) + 0.5 * float(
                np.sum(t[:48] ** 2)
            )

        assert objective(theta) <= objective(oracle[0]) * (1 + 1e-6) + 1e-9, c
        np.testing.assert_allclose(
            ours.predict_proba(x), _oracle_probs(oracle, x, 4), atol=1e-4, err_msg=str(c)
        )
        assert isinstance(ours, LogisticRegression)
    # the whole protocol: the chosen C and the test predictions and probabilities
    xt, yt = _separable_features(200, 12, 4, seed=1)
    xv, yv = _separable_features(80, 12, 4, seed=2)
    xs, ys = _separable_features(150, 12, 4, seed=3)
    result = fit_probe((xt, yt), (xv, yv), xs, 4)
    chosen, probs = _oracle_probe((xt, yt), (xv, yv), xs, 4)
    assert result.c == pytest.approx(chosen, rel=1e-9)
    assert len(result.val_top1) == 13 + 6  # the coarse grid and the refinement
    np.testing.assert_array_equal(result.probs.argmax(1), probs.argmax(1))
    np.testing.assert_allclose(result.probs, probs, atol=1e-4)
    assert np.mean(result.probs.argmax(1) == ys) == pytest.approx(np.mean(probs.argmax(1) == ys))
    assert result.extra["fits_at_iteration_cap"] == 0
    # converged: features moved by 1e-15 (a renormalisation's rounding) change nothing
    nudged = xt + 1e-15 * np.random.default_rng(9).normal(size=xt.shape)
    again = fit_probe((nudged, yt), (xv, yv), xs, 4)
    assert again.c == result.c
    np.testing.assert_allclose(again.probs, result.probs, atol=1e-6)


def test_probe_run_equals_an_independent_optimiser(
    tmp_path: Path, trained_checkpoint: Path
) -> None:
    import timm
    from safetensors.torch import load_file

    write_folder_task(tmp_path / "data" / "vtab" / "eurosat", {"train": 10, "test": 4})
    store = tmp_path / "store.duckdb"
    cmd = [
        sys.executable,
        "-m",
        "precompute",
        "--transfer",
        "eurosat",
        "--model",
        "timm:test_vit",
        "--checkpoint",
        str(trained_checkpoint),
        "--data-root",
        str(tmp_path / "data"),
        "--store",
        str(store),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "0",
        "--bootstrap",
        "0",
        "--quiet",
        "--preprocessing",
        "weights",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = Store(store)
    preds = s.query("SELECT sample_id, pred, label FROM predictions ORDER BY sample_id")
    mets = s.query("SELECT metric, value FROM metrics").set_index("metric")["value"]
    run = s.query("SELECT dataset, settings FROM runs").iloc[0]
    assert run["dataset"] == "vtab-eurosat"
    assert "probe" in json.loads(run["settings"])["transfer"]
    assert (mets["n_train"], mets["n_val"], mets["n_test"]) == (24, 6, 12)

    # the oracle: scikit-learn on the same (cached) features of the same split ...
    td = load_task(TASKS.get("eurosat"), tmp_path / "data", SPLIT_PROTOCOLS.get("vtab-1k"))
    assert td is not None
    by_size = {}
    for f in (tmp_path / "cache" / "features").glob("*.npz"):
        with np.load(f) as z:
            by_size[len(z["index"])] = (z["values"], z["labels"])
    xy = {}
    for split, ds in td.splits.items():
        f, y = by_size[len(ds.samples)]
        np.testing.assert_array_equal(y, [x.label for x in ds.samples])
        xy[split] = (f / np.linalg.norm(f, axis=1, keepdims=True), y)
    # ... which are timm's own pre-logits features of those images
    model = timm.create_model("test_vit", num_classes=1000)
    model.load_state_dict(load_file(str(trained_checkpoint)))
    direct = _features_direct(model.eval(), [x.path for x in td.splits["test"].samples])
    cos = np.sum(l2(direct) * xy["test"][0], axis=1)
    assert cos.min() > 0.999
    # ... and the probe's protocol re-done with an independent optimiser of its objective
    chosen, probs = _oracle_probe(xy["train"], xy["val"], xy["test"][0], len(td.classes))
    assert mets["probe_c"] == pytest.approx(chosen, rel=1e-9)
    want = probs.argmax(1)
    ids = [x.sample_id for x in td.splits["test"].samples]
    got = preds.set_index("sample_id").loc[ids, "pred"].to_numpy()
    np.testing.assert_array_equal(got, want)
    assert mets["top1"] == pytest.approx(np.mean(want == xy["test"][1]))
    assert mets["top1"] > 0.5  # the trained model's features transfer to these pictures

    # features are cached (one file per split); a rerun is a no-op
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 3
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "skip" in again.stderr


@pytest.mark.parametrize("damage", ["truncate", "empty", "index", "width", "directory"])
def test_a_damaged_feature_cache_is_extracted_again(
    damage: str, data_root: Path, tiny_timm, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from beyond_inet.datasets import DATASETS, discover
    from beyond_inet.run.engine import RunSettings
    from beyond_inet.run.features import split_features

    found = discover(DATASETS.get("cue-conflict"), data_root / "cue-conflict")
    assert found is not None
    settings = RunSettings(workers=0, progress=False)
    fresh = split_features(found, tiny_timm, settings, tmp_path)
    (path,) = (tmp_path / "features").glob("*.npz")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage in ("index", "width"):
        bad_index = fresh.index + (100 if damage == "index" else 0)
        values = fresh.values if damage == "index" else fresh.values[:, :3]
        np.savez(path.with_suffix(""), index=bad_index, values=values, labels=fresh.labels,
                 failed="[]")  # fmt: skip
    else:
        path.unlink()
        path.mkdir()
    notes: list[str] = []
    again = split_features(found, tiny_timm, settings, tmp_path, notes.append)
    assert any("unusable" in n and "extracting them again" in n for n in notes), notes
    assert not again.cached and np.array_equal(again.index, fresh.index)
    np.testing.assert_allclose(again.values, fresh.values, rtol=1e-6)
    third = split_features(found, tiny_timm, settings, tmp_path, notes.append)
    assert third.cached  # rewritten: the next run reads it
