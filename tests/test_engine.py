"""The single-pass engine: one decode per image, per-image outputs that match the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import beyond_inet.data as data_mod
from beyond_inet.data import DATASETS, discover, load_rgb, pil_to_tensor
from beyond_inet.engine import RunSettings, run_pass
from beyond_inet.models import LoadedModel
from beyond_inet.preprocess import standard_transform


def test_each_image_is_decoded_once_for_all_models(
    data_root: Path,
    tiny_timm: LoadedModel,
    tiny_clip: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = data_mod.load_rgb

    def counting(path):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(data_mod, "load_rgb", counting)
    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val")
    assert found is not None
    result = run_pass(
        found, [tiny_timm, tiny_clip], RunSettings(batch_size=5, workers=0, progress=False)
    )
    assert sorted(calls) == sorted(str(s.path) for s in found.samples)  # once each
    assert len(result.failed) == 2 and result.n_images == 14
    for name in (tiny_timm.name, tiny_clip.name):
        assert len(result.outputs[(name, "standard")].index) == 12


def test_outputs_match_a_direct_forward_pass(data_root: Path, tiny_timm: LoadedModel) -> None:
    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val", limit=6)
    assert found is not None
    out = run_pass(found, [tiny_timm], RunSettings(batch_size=4, workers=0, progress=False))
    arrays = out.outputs[(tiny_timm.name, "standard")]
    ok = [found.samples[i] for i in arrays.index]
    x = torch.stack(
        [standard_transform(pil_to_tensor(load_rgb(s.path)), tiny_timm.preprocessing) for s in ok]
    )
    with torch.no_grad():
        probs = torch.softmax(tiny_timm.module(x), -1).numpy()
    labels = np.array([s.label for s in ok])
    np.testing.assert_array_equal(arrays.pred, probs.argmax(1))
    np.testing.assert_allclose(arrays.confidence, probs.max(1), rtol=1e-5)
    np.testing.assert_allclose(arrays.p_true, probs[np.arange(len(ok)), labels], rtol=1e-5)
    expected_brier = ((probs - np.eye(1000)[labels]) ** 2).sum(1)
    np.testing.assert_allclose(arrays.brier, expected_brier, rtol=1e-5)
    np.testing.assert_array_equal(arrays.topk_idx, np.argsort(-probs, 1)[:, :5])


def test_worker_processes_give_the_same_results(data_root: Path, tiny_timm: LoadedModel) -> None:
    found = discover(DATASETS.get("cue-conflict"), data_root / "cue-conflict")
    assert found is not None
    a = run_pass(found, [tiny_timm], RunSettings(batch_size=2, workers=0, progress=False))
    b = run_pass(found, [tiny_timm], RunSettings(batch_size=4, workers=2, progress=False))
    ka, kb = a.outputs[(tiny_timm.name, "standard")], b.outputs[(tiny_timm.name, "standard")]
    np.testing.assert_array_equal(ka.index, kb.index)
    np.testing.assert_allclose(ka.confidence, kb.confidence, rtol=1e-5)


def test_class_subset_softmax_and_indices() -> None:
    from beyond_inet.engine import ClassSubset, score_logits

    logits = torch.full((2, 1000), -10.0)
    logits[0, 5] = 9.0  # best overall but outside the subset
    logits[0, 7], logits[0, 3] = 2.0, 1.0
    logits[1, 3] = 4.0
    subset = ClassSubset.of([3, 7, 11])
    out = score_logits(logits, torch.tensor([7, 5]), None, subset)
    sub = torch.softmax(logits[:, [3, 7, 11]], -1).numpy()
    np.testing.assert_array_equal(out["pred"], [7, 3])
    np.testing.assert_array_equal(out["pred_full"], [5, 3])
    np.testing.assert_allclose(out["confidence"], sub.max(1), rtol=1e-6)
    assert out["p_true"][0] == pytest.approx(sub[0, 1])
    assert np.isnan(out["p_true"][1])  # label outside the subset: no true-class probability
    assert out["topk_idx"].shape == (2, 3) and set(out["topk_idx"][0]) == {3, 7, 11}


def test_sample_groups_become_views() -> None:
    from beyond_inet.data import DatasetSpec, FoundDataset, Sample
    from beyond_inet.engine import PredictionArrays
    from beyond_inet.pipeline import split_views

    samples = [
        Sample(Path(f"{g}/{i}.png"), f"{g}/{i}.png", 1, group=g)
        for i, g in enumerate(["fog:1", "fog:2", "fog:1"])
    ]
    spec = DatasetSpec("x", "x", "", "", find=lambda _: samples)
    arrays = PredictionArrays(
        index=np.array([0, 1, 2]),
        pred=np.array([1, 2, 1]),
        confidence=np.ones(3) / 2,
        p_true=np.ones(3) / 2,
        topk_idx=np.zeros((3, 5), int),
        topk_prob=np.zeros((3, 5)),
        brier=np.zeros(3),
    )
    views = split_views(FoundDataset(spec, Path("."), samples), {"standard": arrays}, None)
    assert sorted(views) == ["fog:1", "fog:2"]
    assert list(views["fog:1"].sample_ids) == ["fog:1/0.png", "fog:1/2.png"]
    assert views["fog:1"].correct.tolist() == [True, True] and not views["fog:2"].correct[0]
