"""Linear CKA: the minibatch unbiased-HSIC estimator against direct full-batch formulas, its
invariances, and a model compared with itself through the engine's taps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from beyond_inet.scoring.cka import (
    FullBatchCKA,
    MinibatchCKA,
    diagonal_profile,
    hsic1_matrix,
)
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import TINY_CLIP, TINY_TIMM, write_flat_val


def _direct_unbiased_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012) eq. 5, written out with explicit ones vectors (the oracle)."""
    n = len(x)
    k, l_ = x @ x.T, y @ y.T
    k[np.diag_indices(n)] = 0
    l_[np.diag_indices(n)] = 0
    one = np.ones(n)
    term = np.trace(k @ l_)
    term += (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
    term -= 2 / (n - 2) * (one @ k @ l_ @ one)
    return float(term / (n * (n - 3)))


def _related(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.tanh(x @ rng.normal(size=(d, d))) + 0.3 * rng.normal(size=(n, d))
    return x, y


def test_hsic1_matches_the_written_out_formula() -> None:
    x, y = _related(40, 5, 0)
    got = hsic1_matrix([x, y], [y])
    assert got[0, 0] == pytest.approx(_direct_unbiased_hsic(x, y), rel=1e-10)
    assert got[1, 0] == pytest.approx(_direct_unbiased_hsic(y, y), rel=1e-10)


def test_one_minibatch_is_the_full_batch_unbiased_cka() -> None:
    x, y = _related(300, 8, 1)
    acc = MinibatchCKA(1, 1)
    acc.update([x], [y])
    direct = _direct_unbiased_hsic(x, y) / np.sqrt(
        _direct_unbiased_hsic(x, x) * _direct_unbiased_hsic(y, y)
    )
    assert acc.value()[0, 0] == pytest.approx(direct, abs=1e-12)


def _feature_space_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s formula written out in feature space (the oracle)."""
    xc = x.astype(np.float64) - x.mean(0)
    yc = y.astype(np.float64) - y.mean(0)
    return float(
        np.sum((yc.T @ xc) ** 2) / np.sqrt(np.sum((xc.T @ xc) ** 2) * np.sum((yc.T @ yc) ** 2))
    )


def test_minibatch_estimate_equals_full_batch_linear_cka() -> None:
    """6,000 images in minibatches of 1,000 vs linear CKA on all of them at once
    (Kornblith et al.'s formula), to 1e-3 (the biased full-batch estimate differs by O(d/n))."""
    x, y = _related(6000, 8, 2)
    acc = MinibatchCKA(1, 1)
    for i in range(0, len(x), 1000):
        acc.update([x[i : i + 1000]], [y[i : i + 1000]])
    assert acc.value()[0, 0] == pytest.approx(_feature_space_cka(x, y), abs=1e-3)
    assert acc.images == 6000 and acc.batches == 6


def test_cka_of_x_with_itself_is_one_and_invariances() -> None:
    rng = np.random.default_rng(3)
    x, y = _related(512, 12, 3)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))  # an orthogonal transform
    acc = MinibatchCKA(3, 1)
    for i in range(0, 512, 128):
        s = slice(i, i + 128)
        acc.update([x[s], x[s] @ q, 7.5 * x[s]], [x[s]])
    np.testing.assert_allclose(acc.value()[:, 0], 1.0, atol=1e-10)
    base, rotated, scaled = MinibatchCKA(1, 1), MinibatchCKA(1, 1), MinibatchCKA(1, 1)
    for i in range(0, 512, 128):
        s = slice(i, i + 128)
        base.update([x[s]], [y[s]])
        rotated.update([x[s] @ q], [y[s]])
        scaled.update([x[s]], [0.01 * y[s]])
    assert rotated.value()[0, 0] == pytest.approx(base.value()[0, 0], abs=1e-10)
    assert scaled.value()[0, 0] == pytest.approx(base.value()[0, 0], abs=1e-10)
    full = FullBatchCKA(2, 1)
    full.update([x, x @ q], [3 * y])
    assert full.value()[1, 0] == pytest.approx(full.value()[0, 0], abs=1e-10)


def test_full_batch_cka_is_kornbliths_formula_and_differs_on_unrelated_layers() -> None:

    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(40, 7)), rng.normal(size=(40, 3))]
    ys = [xs[0] @ rng.normal(size=(7, 5)), rng.normal(size=(40, 6))]
    acc = FullBatchCKA(2, 2)
    for i in range(0, 40, 16):  # batches of any size, the last one small
        acc.update([x[i : i + 16] for x in xs], [y[i : i + 16] for y in ys])
    want = np.array([[_feature_space_cka(x, y) for y in ys] for x in xs])
    np.testing.assert_allclose(acc.value(), want, rtol=1e-10)
    # unrelated features: the biased estimate sits well above 0, the unbiased one near it
    a, b = rng.normal(size=(400, 50)), rng.normal(size=(400, 50))
    full, mini = FullBatchCKA(1, 1), MinibatchCKA(1, 1)
    for i in range(0, 400, 100):
        full.update([a[i : i + 100]], [b[i : i + 100]])
        mini.update([a[i : i + 100]], [b[i : i + 100]])
    assert full.value()[0, 0] > 0.05 and abs(mini.value()[0, 0]) < 0.05


def test_small_minibatches_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        MinibatchCKA(1, 1).update([np.ones((3, 2))], [np.ones((3, 2))])


def test_diagonal_profile_reads_corresponding_depths() -> None:
    m = np.arange(12, dtype=float).reshape(3, 4)
    prof = diagonal_profile(m)
    np.testing.assert_allclose(prof[:, 0], [0, 0.5, 1])
    np.testing.assert_allclose(prof[:, 1], [m[0, 0], m[1, 2], m[2, 3]])  # rint(1.5) = 2


# --------------------------------------------------------------------------- end to end


def _cells(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = Store(store)
    return s.query("SELECT * FROM cka_runs ORDER BY model_a, model_b"), s.query(
        "SELECT * FROM cka ORDER BY run_id, row, col"
    )


def test_precompute_cka_model_with_itself_and_a_pair(tmp_path: Path) -> None:
    """``--cka A`` gives a symmetric matrix with ones on the diagonal; ``--cka A,B`` a
    layers(A) x layers(B) matrix equal to the estimator on directly captured taps; a
    rerun is a no-op."""
    store = tmp_path / "s.duckdb"
    data_root = tmp_path / "data"
    write_flat_val(data_root / "imagenet" / "val", 12)
    base = ["--data-root", str(data_root), "--store", str(store), "--workers", "0", "--quiet"]
    base += ["--random-weights", "--batch-size", "6", "--cka-images", "12"]
    assert main(["--cka", TINY_TIMM, *base]) == 0
    assert main(["--cka", f"{TINY_TIMM},{TINY_CLIP}", *base]) == 0
    runs, cells = _cells(store)
    assert len(runs) == 2 and set(runs["n_images"]) == {12}
    self_run = runs[runs["model_b"] == TINY_TIMM].iloc[0]
    m = cells[cells["run_id"] == self_run["run_id"]].pivot(index="row", columns="col", values="cka")
    assert m.shape[0] == m.shape[1] == len(json.loads(self_run["layers_a"])) > 1
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T, atol=1e-5)
    pair = runs[runs["model_b"] == TINY_CLIP].iloc[0]
    got = cells[cells["run_id"] == pair["run_id"]].pivot(index="row", columns="col", values="cka")
    assert got.shape == (len(json.loads(pair["layers_a"])), len(json.loads(pair["layers_b"])))

    # the oracle: every tap captured by plain forward hooks, the estimator on 6-image batches
    from beyond_inet.datasets import DATASETS, discover
    from beyond_inet.models import LoadOptions, WeightsSource, load_model
    from beyond_inet.run.similarity import choose_images

    found = choose_images(
        discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val"), 12
    )
    acts: dict[str, list[np.ndarray]] = {}
    for name in (TINY_TIMM, TINY_CLIP):
        model = load_model(name, LoadOptions(weights=WeightsSource("random")))
        pts = model.module.tap_points()
        out: dict[str, torch.Tensor] = {}
        hooks = [
            p.register_forward_hook(lambda _m, _i, o, n=n, out=out: out.__setitem__(n, o))
            for n, p in pts.items()
        ]
        from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
        from beyond_inet.transforms.views import STANDARD

        batch = []
        for s in found.samples:
            img = pil_to_tensor(load_rgb(s.path))
            batch.append(STANDARD.transform(img, model.preprocessing))
        with torch.inference_mode():
            model.module.eval()(torch.stack(batch))
        for h in hooks:
            h.remove()
        acts[name] = [model.module.pool_tap(n, out[n]).numpy() for n in pts]
    acc = MinibatchCKA(len(acts[TINY_TIMM]), len(acts[TINY_CLIP]))
    for i in (0, 6):
        acc.update([a[i : i + 6] for a in acts[TINY_TIMM]], [b[i : i + 6] for b in acts[TINY_CLIP]])
    np.testing.assert_allclose(got.to_numpy(), acc.value(), atol=1e-4)

    assert main(["--cka", TINY_TIMM, *base]) == 0  # already stored: skipped
    assert len(_cells(store)[0]) == 2
    # the biased full-batch estimator: a run of its own, named, equal to the formula
    assert main(["--cka", f"{TINY_TIMM},{TINY_CLIP}", "--cka-estimator", "full", *base]) == 0
    runs, cells = _cells(store)
    full = runs[runs["estimator"].str.contains("full-batch biased")].iloc[0]
    got = cells[cells["run_id"] == full["run_id"]].pivot(index="row", columns="col", values="cka")
    want = [[_feature_space_cka(a, b) for b in acts[TINY_CLIP]] for a in acts[TINY_TIMM]]
    np.testing.assert_allclose(got.to_numpy(), np.array(want), atol=1e-4)


def test_cka_bad_inputs_exit_2(tmp_path: Path, data_root: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = ["--data-root", str(data_root), "--store", str(tmp_path / "s.duckdb"), "--quiet"]
    assert main(["--cka", "a,b,c", *base]) == 2
    assert "MODEL_A,MODEL_B" in capsys.readouterr().err
    assert main(["--cka", "timm:test_vit", "--transfer", "dtd", *base]) == 2
    assert main(["--cka", "deit3_2k", "--random-weights", *base]) == 2
    assert "deit3_21k" in capsys.readouterr().err
