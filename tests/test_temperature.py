"""Temperature scaling: the fit against a direct scipy optimisation of the NLL, the
deterministic cross-fit split, and what ``precompute`` stores against a direct forward pass
of the same weights (ImageNet val cross-fitted; a shift dataset at val's temperature)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import LoadOptions, WeightsSource, load_model
from beyond_inet.scoring import temperature as ts
from beyond_inet.store import Store
from beyond_inet.transforms.preprocess import standard_transform
from precompute.cli import main
from tests.trained import write_class_folders

QUIET = ["--workers", "0", "--bootstrap", "0", "--quiet", "--no-invariance"]


def _overconfident(n: int, k: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a calibrated classifier multiplied by ``scale`` (optimum T ~ scale)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, labels


def _scipy_oracle(logits: np.ndarray, labels: np.ndarray) -> float:
    """Direct L-BFGS-B on T of the mean NLL computed by torch's cross entropy."""
    z = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)

    def nll(t: np.ndarray) -> float:
        return float(torch.nn.functional.cross_entropy(z / float(t[0]), y))

    return float(minimize(nll, x0=[1.0], bounds=[(0.05, 20.0)], method="L-BFGS-B").x[0])


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_fit_equals_a_direct_scipy_optimisation_of_the_nll(scale: float) -> None:
    z, y = _overconfident(2000, 10, scale, seed=int(scale * 10))
    t = ts.fit_temperature(z, y)
    assert t == pytest.approx(_scipy_oracle(z, y), rel=1e-3)
    assert t == pytest.approx(scale, rel=0.15)  # recovers the over/under-confidence
    assert ts.mean_nll(z, y, t) <= ts.mean_nll(z, y, 1.0) + 1e-12


def test_a_temperature_that_is_not_identified_is_flagged() -> None:
    z, y = _overconfident(400, 5, 1.0, seed=3)
    assert ts.fit_with_identification(z, y)[1]
    separated = np.zeros((50, 4), np.float32)
    labels = np.arange(50) % 4
    separated[np.arange(50), labels] = 10.0  # every image right by a margin: T -> 0
    t, ok = ts.fit_with_identification(separated, labels)
    assert not ok and t < 0.5 and ts.mean_nll(separated, labels, t) < 1e-12
    flat = np.ones((40, 3), np.float32)  # constant logits: the NLL does not depend on T
    assert not ts.fit_with_identification(flat, np.arange(40) % 3)[1]
    fit = ts.cross_fit(separated, labels, ts.folds([f"img{i}" for i in range(50)]))
    assert fit.complete and not fit.identified


def test_fit_ignores_unlabelled_images_and_is_nan_without_labels() -> None:
    z, y = _overconfident(300, 5, 2.0, seed=1)
    with_missing = np.r_[y[:200], -np.ones(100, int)]
    assert ts.fit_temperature(z, with_missing) == pytest.approx(
        ts.fit_temperature(z[:200], y[:200]), rel=1e-9
    )
    assert np.isnan(ts.fit_temperature(z, -np.ones(300, int)))


def test_the_cross_fit_split_is_deterministic_and_order_free() -> None:
    ids = [f"n{c:08d}/ILSVRC2012_val_{i:08d}.JPEG" for c in range(5) for i in range(200)]
    f = ts.folds(ids)
    hand = [hashlib.sha256(s.encode()).digest()[0] % 2 for s in ids]
    np.testing.assert_array_equal(f, hand)
    perm = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(ts.folds([ids[i] for i in perm]), f[perm])
    assert 0.45 < f.mean() < 0.55  # two halves
    # pinned: the documented split never changes between releases
    assert ts.folds(["a.JPEG", "b.JPEG", "n01440764/ILSVRC2012_val_00000293.JPEG"]).tolist() == [
        hashlib.sha256(b"a.JPEG").digest()[0] & 1,
        hashlib.sha256(b"b.JPEG").digest()[0] & 1,
        hashlib.sha256(b"n01440764/ILSVRC2012_val_00000293.JPEG").digest()[0] & 1,
    ]


def test_cross_fit_scores_each_image_with_the_other_folds_temperature() -> None:
    z, y = _overconfident(600, 8, 2.5, seed=3)
    fold = ts.folds([f"img{i}.png" for i in range(600)])
    fit = ts.cross_fit(z, y, fold)
    for k in (0, 1):
        assert fit.fold_temperatures[k] == pytest.approx(
            _scipy_oracle(z[fold == k], y[fold == k]), rel=1e-3
        )
        np.testing.assert_array_equal(fit.per_image[fold == k], fit.fold_temperatures[1 - k])
    assert fit.temperature == pytest.approx(_scipy_oracle(z, y), rel=1e-3)
    assert fit.complete
    assert not ts.cross_fit(z[:3], y[:3], np.zeros(3, int)).complete  # an empty fold


# ---------------------------------------------------------------------------- precompute


@pytest.fixture(scope="module")
def shift_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet-Sketch in its wnid-folder layout, images of the trained model's classes."""
    root = tmp_path_factory.mktemp("shift")
    write_class_folders(root / "imagenet-sketch", per_class=4, seed=7)
    return root


def _direct_logits(checkpoint: Path, root: Path, ids: list[str]) -> np.ndarray:
    model = load_model(
        "timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", checkpoint))
    )
    x = torch.stack(
        [standard_transform(pil_to_tensor(load_rgb(root / s)), model.preprocessing) for s in ids]
    )
    with torch.no_grad():
        return model.module.net(x).double().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_precompute_cross_fits_val_and_applies_its_temperature_to_a_shift_dataset(
    trained_checkpoint: Path, trained_val_root: Path, shift_root: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "t.duckdb")
    base = ["--model", "timm:test_vit", "--checkpoint", str(trained_checkpoint)]
    base += ["--store", str(store.path), *QUIET]
    sketch = [*base, "--data-root", str(shift_root), "--dataset", "imagenet-sketch"]
    # a shift dataset before ImageNet val: stored, without scaled calibration
    assert main(sketch) == 0
    first = store.query("SELECT count(confidence_ts) AS n FROM predictions")["n"].iloc[0]
    assert first == 0
    assert main([*base, "--data-root", str(trained_val_root), "--dataset", "imagenet-val"]) == 0
    assert main(sketch) == 0  # the temperature now exists: a new run (key), not a skip
    runs = store.query("SELECT run_id, dataset, settings FROM runs ORDER BY finished_at")
    assert runs["dataset"].tolist() == ["imagenet-sketch", "imagenet-val", "imagenet-sketch"]

    # ImageNet val: each fold scored at the other fold's temperature (direct forward oracle)
    val = store.query(
        "SELECT sample_id, label, p_true_ts, confidence_ts, brier_ts FROM predictions p "
        "JOIN runs r USING (run_id) WHERE r.dataset = 'imagenet-val' ORDER BY sample_id"
    )
    z = _direct_logits(
        trained_checkpoint, trained_val_root / "imagenet" / "val", list(val.sample_id)
    )
    y = val["label"].to_numpy()
    fold = np.array([hashlib.sha256(s.encode()).digest()[0] & 1 for s in val.sample_id])
    t_fold = [_scipy_oracle(z[fold == k], y[fold == k]) for k in (0, 1)]
    t_all = _scipy_oracle(z, y)
    m = store.query(
        "SELECT metric, value FROM metrics m JOIN runs r USING (run_id) "
        "WHERE r.dataset = 'imagenet-val' AND m.view = 'standard'"
    ).set_index("metric")["value"]
    assert m["temperature_fold:0"] == pytest.approx(t_fold[0], rel=2e-3)
    assert m["temperature_fold:1"] == pytest.approx(t_fold[1], rel=2e-3)
    assert m["temperature"] == pytest.approx(t_all, rel=2e-3)
    p = _softmax(z / np.where(fold == 0, t_fold[1], t_fold[0])[:, None])
    np.testing.assert_allclose(val["p_true_ts"], p[np.arange(len(y)), y], rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(val["confidence_ts"], p.max(1), rtol=2e-3, atol=1e-5)
    onehot = np.eye(p.shape[1])[y]
    np.testing.assert_allclose(val["brier_ts"], ((p - onehot) ** 2).sum(1), rtol=2e-3, atol=1e-5)
    assert m["nll_ts"] == pytest.approx(-np.log(p[np.arange(len(y)), y]).mean(), rel=2e-3)
    assert m["nll_ts"] <= m["nll"] + 0.05  # scaling on held-out halves helps (or barely hurts)
    settings = json.loads(runs["settings"].iloc[1])["temperature_scaling"]
    assert settings["fold_temperatures"] == pytest.approx(
        [m["temperature_fold:0"], m["temperature_fold:1"]]
    )

    # the shift dataset: every image at val's full temperature, recorded with its source
    sk = store.query(
        "SELECT sample_id, label, p_true_ts FROM predictions WHERE run_id = ? ORDER BY sample_id",
        [runs["run_id"].iloc[2]],
    )
    zs = _direct_logits(trained_checkpoint, shift_root / "imagenet-sketch", list(sk.sample_id))
    ps = _softmax(zs / m["temperature"])
    ys = sk["label"].to_numpy()
    np.testing.assert_allclose(sk["p_true_ts"], ps[np.arange(len(ys)), ys], rtol=2e-3, atol=1e-5)
    src = json.loads(runs["settings"].iloc[2])["temperature_scaling"]
    assert src["fitted_by_run"] == runs["run_id"].iloc[1]
    assert src["temperature"] == pytest.approx(m["temperature"])


def test_a_smoke_runs_temperature_is_never_applied(
    trained_checkpoint: Path, trained_val_root: Path, shift_root: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "smoke.duckdb")
    base = ["--model", "timm:test_vit", "--checkpoint", str(trained_checkpoint)]
    base += ["--store", str(store.path), *QUIET]
    val = [*base, "--data-root", str(trained_val_root), "--dataset", "imagenet-val"]
    assert main([*val, "--limit", "20"]) == 0  # fits a temperature on 20 images only
    limited = store.query("SELECT settings FROM runs")["settings"].iloc[0]
    assert json.loads(limited)["limit"]["images"] == 20
    sketch = [*base, "--data-root", str(shift_root), "--dataset", "imagenet-sketch"]
    assert main(sketch) == 0
    n = store.query(
        "SELECT count(confidence_ts) AS n FROM predictions WHERE dataset = 'imagenet-sketch'"
    )["n"].iloc[0]
    assert n == 0  # stored without scaling: the 20-image temperature is not applied
    assert main(val) == 0 and main(sketch) == 0  # the whole split: now it is
    full = store.query(
        "SELECT r.run_id FROM runs r WHERE dataset = 'imagenet-val' AND sample_limit IS NULL"
    )["run_id"].iloc[0]
    last = store.query("SELECT settings FROM runs ORDER BY finished_at DESC LIMIT 1")
    assert json.loads(last["settings"].iloc[0])["temperature_scaling"]["fitted_by_run"] == full
