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
    data_root: Path, tiny_timm: LoadedModel, tiny_clip: LoadedModel,
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
    result = run_pass(found, [tiny_timm, tiny_clip],
                      RunSettings(batch_size=5, workers=0, progress=False))
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
    x = torch.stack([standard_transform(pil_to_tensor(load_rgb(s.path)),
                                        tiny_timm.preprocessing) for s in ok])
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
