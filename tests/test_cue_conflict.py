"""Tests for beyond_inet.cue_conflict: categories, stimulus names and the 1000 -> 16 mapping."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from beyond_inet.datasets import cue_conflict as cc

SHARED_CSV = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "reference"
    / "cue_conflict_16class_imagenet_indices.csv"
)


def _mvh_decision(probs: np.ndarray) -> np.ndarray:
    """model-vs-human ImageNetProbabilitiesTo16ClassesMapping (np.mean), top-1 as an index."""
    indices = cc.category_imagenet_indices()
    aggregated = np.transpose(
        [np.mean(np.take(probs, indices[c], axis=-1), axis=-1) for c in cc.CATEGORIES]
    )
    return np.flip(np.argsort(aggregated, axis=-1), axis=-1)[:, 0]


def _random_probs(seed: int, n: int = 256) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, 1000)) * 3.0
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_categories_alphabetical_16() -> None:
    assert len(cc.CATEGORIES) == 16
    assert list(cc.CATEGORIES) == sorted(cc.CATEGORIES)
    assert {"airplane", "knife", "truck", "oven"} <= set(cc.CATEGORIES)


def test_category_indices_match_model_vs_human() -> None:
    indices = cc.category_imagenet_indices()
    assert tuple(indices) == cc.CATEGORIES
    assert indices["bear"] == (294, 295, 296, 297)
    assert indices["knife"] == (499,) and indices["oven"] == (766,)
    assert indices["truck"] == (555, 569, 656, 675, 717, 734, 864, 867)
    assert len(indices["dog"]) == 109 and len(indices["bird"]) == 49
    flat = [i for v in indices.values() for i in v]
    assert len(flat) == len(set(flat)) == 207
    indices["bear"] = ()  # callers get a copy: the cached table is unaffected
    assert cc.category_imagenet_indices()["bear"] == (294, 295, 296, 297)


def test_shipped_csv_equals_shared_reference() -> None:
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared reference not available: {SHARED_CSV}")
    shipped = resources.files("beyond_inet.resources").joinpath(SHARED_CSV.name).read_text()
    assert shipped == SHARED_CSV.read_text()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat1-airplane1.png", ("cat", "airplane")),
        ("/data/cue-conflict/cat/cat1-airplane1.png", ("cat", "airplane")),
        ("keyboard10-elephant3.png", ("keyboard", "elephant")),
        ("session-1_0042_dog10-bird2.png", ("dog", "bird")),
        ("oven2-oven7.JPG", ("oven", "oven")),
    ],
)
def test_parse_stimulus_name(name: str, expected: tuple[str, str]) -> None:
    assert cc.parse_stimulus_name(name) == expected


@pytest.mark.parametrize(
    "name",
    ["cat1.png", "cat-airplane.png", "cat1-airplane1.txt", "cat1-zebra2.png", "", "c1-a b1.png"],
)
def test_parse_stimulus_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="cue-conflict"):
        cc.parse_stimulus_name(name)


def test_decision_uses_mean_not_sum_or_max() -> None:
    probs = np.zeros((2, 1000))
    dogs = list(cc.category_imagenet_indices()["dog"])
    probs[0, dogs] = 0.6 / len(dogs)  # dog: sum 0.6 but mean ~0.0055
    probs[0, 499] = 0.3  # knife (single class): mean 0.3 -> wins
    probs[0, 0] = 0.1  # tench: not in any category
    probs[1, 8] = 0.5  # one bird class 0.5 -> bird mean 0.5 / 49 ~ 0.0102
    probs[1, [294, 295, 296, 297]] = 0.05  # bear mean 0.05 -> wins
    probs[1, 1] = 0.3
    expected = [cc.CATEGORIES.index("knife"), cc.CATEGORIES.index("bear")]
    np.testing.assert_array_equal(cc.decision_from_probs(torch.from_numpy(probs)), expected)
    np.testing.assert_array_equal(_mvh_decision(probs), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_decision_matches_model_vs_human_mapping(seed: int) -> None:
    probs = _random_probs(seed)
    got = cc.decision_from_probs(torch.from_numpy(probs)).numpy()
    assert got.dtype == np.int64 and got.shape == (256,)
    np.testing.assert_array_equal(got, _mvh_decision(probs))
    assert len(set(got.tolist())) > 4  # non-degenerate test data


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_decision_in_either_precision_matches_model_vs_human(dtype: torch.dtype) -> None:
    probs = _random_probs(3)
    got = cc.decision_from_probs(torch.from_numpy(probs).to(dtype))
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), _mvh_decision(probs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_decision_on_gpu() -> None:
    probs = _random_probs(4)
    on_gpu = cc.decision_from_probs(torch.from_numpy(probs).float().cuda())
    assert on_gpu.is_cuda
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), _mvh_decision(probs))


def test_decision_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        cc.decision_from_probs(torch.zeros(3, 999))
    with pytest.raises(ValueError):
        cc.decision_from_probs(torch.zeros(1000))
    with pytest.raises(ValueError):
        cc.decision_from_probs(torch.zeros(2, 16))
    with pytest.raises(ValueError):
        cc.decision_from_probs(torch.zeros(2, 1000, dtype=torch.int64))
