"""The single-pass engine: one decode per image, per-image outputs that match the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import beyond_inet.datasets.decode as data_mod
from beyond_inet.datasets import DATASETS, discover
from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import LoadedModel
from beyond_inet.run.engine import RunSettings, run_pass
from beyond_inet.transforms.preprocess import standard_transform


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
    """The oracle shares no code with the engine: PIL decoding, timm's own PIL eval
    transform for these weights, the timm model's forward, softmax in numpy."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val", limit=6)
    assert found is not None
    out = run_pass(found, [tiny_timm], RunSettings(batch_size=4, workers=0, progress=False))
    arrays = out.outputs[(tiny_timm.name, "standard")]
    ok = [found.samples[i] for i in arrays.index]
    net = tiny_timm.module.net
    transform = create_transform(**resolve_data_config(model=net))
    x = torch.stack([transform(Image.open(s.path).convert("RGB")) for s in ok])
    with torch.no_grad():
        logits = net(x).double().numpy()
    e = np.exp(logits - logits.max(1, keepdims=True))
    probs = e / e.sum(1, keepdims=True)
    labels = np.array([s.label for s in ok])
    # PIL resamples within one 8-bit level of ours (~1e-4 here; bilinear for bicubic: ~1e-2)
    np.testing.assert_allclose(arrays.confidence, probs.max(1), rtol=1e-3)
    np.testing.assert_allclose(arrays.p_true, probs[np.arange(len(ok)), labels], rtol=1e-3)
    expected_brier = ((probs - np.eye(1000)[labels]) ** 2).sum(1)
    np.testing.assert_allclose(arrays.brier, expected_brier, rtol=1e-3)
    # the OOD scores: the largest logit and log-sum-exp (the negative energy)
    np.testing.assert_allclose(arrays.max_logit, logits.max(1), rtol=1e-3, atol=1e-3)
    lse = logits.max(1) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(arrays.logsumexp, lse, rtol=1e-3, atol=1e-3)
    top2 = np.sort(probs, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3 * top2[:, 1]  # argmax not within resampling noise
    assert clear.any()
    np.testing.assert_array_equal(arrays.pred[clear], probs.argmax(1)[clear])
    np.testing.assert_array_equal(arrays.topk_idx[clear, 0], np.argsort(-probs, 1)[clear, 0])


def test_worker_processes_give_the_same_results(data_root: Path, tiny_timm: LoadedModel) -> None:
    found = discover(DATASETS.get("cue-conflict"), data_root / "cue-conflict")
    assert found is not None
    a = run_pass(found, [tiny_timm], RunSettings(batch_size=2, workers=0, progress=False))
    b = run_pass(found, [tiny_timm], RunSettings(batch_size=4, workers=2, progress=False))
    ka, kb = a.outputs[(tiny_timm.name, "standard")], b.outputs[(tiny_timm.name, "standard")]
    np.testing.assert_array_equal(ka.index, kb.index)
    np.testing.assert_allclose(ka.confidence, kb.confidence, rtol=1e-5)


def test_class_subset_softmax_and_indices() -> None:
    from beyond_inet.run.engine import ClassSubset, score_logits

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
    from beyond_inet.datasets import DatasetSpec, FoundDataset, Layout, Sample
    from beyond_inet.run.engine import LogitOutputs
    from beyond_inet.run.outputs import split_views

    samples = [
        Sample(Path(f"{g}/{i}.png"), f"{g}/{i}.png", 1, group=g)
        for i, g in enumerate(["fog:1", "fog:2", "fog:1"])
    ]
    spec = DatasetSpec("x", "x", Layout("", "", find=lambda _: samples), "")
    arrays = LogitOutputs(
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
    assert list(views["fog:1"].sample_id) == ["fog:1/0.png", "fog:1/2.png"]
    assert views["fog:1"].correct.tolist() == [True, True] and not views["fog:2"].correct[0]


# --------------------------------------------------------------------------- shards, channels


def test_shards_are_disjoint_and_together_give_the_full_pass(
    data_root: Path, tiny_timm: LoadedModel
) -> None:
    from beyond_inet.run.engine import Shard

    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val")
    assert found is not None
    settings = RunSettings(batch_size=3, workers=0, progress=False)
    key = (tiny_timm.name, "standard")
    full = run_pass(found, [tiny_timm], settings)
    parts = [run_pass(found, [tiny_timm], settings, shard=Shard(i, 3)) for i in range(3)]
    indices = [p.outputs[key].index for p in parts]
    assert sum(len(i) for i in indices) == len(full.outputs[key].index)
    assert len(set(np.concatenate(indices))) == len(np.concatenate(indices))  # disjoint
    assert sum(p.n_images for p in parts) == full.n_images == len(found.samples)
    assert sorted(f for p in parts for f in p.failed) == sorted(full.failed)
    by_index = dict(zip(full.outputs[key].index, full.outputs[key].pred, strict=True))
    conf = dict(zip(full.outputs[key].index, full.outputs[key].confidence, strict=True))
    for p in parts:  # outputs keyed by sample index: the same numbers as in the full pass
        o = p.outputs[key]
        assert [by_index[i] for i in o.index] == o.pred.tolist()
        np.testing.assert_allclose([conf[i] for i in o.index], o.confidence, rtol=1e-6)
    with pytest.raises(ValueError, match="shard 3/3"):
        Shard(3, 3)


def _inputs(found, model: LoadedModel, index: np.ndarray) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.stack(
        [
            standard_transform(pil_to_tensor(load_rgb(found.samples[i].path)), model.preprocessing)
            for i in index
        ]
    )


@pytest.mark.parametrize("which", ["timm", "clip"])
def test_features_channel_is_the_libraries_pre_logits_embedding(
    data_root: Path, tiny_timm: LoadedModel, tiny_clip: LoadedModel, which: str
) -> None:
    model = tiny_timm if which == "timm" else tiny_clip
    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val", limit=5)
    assert found is not None
    out = run_pass(
        found,
        [model],
        RunSettings(batch_size=2, workers=0, progress=False),
        channels=("per_image", "features"),
    )
    feats = out.features[(model.name, "standard")]
    x = _inputs(found, model, feats.index)
    with torch.no_grad():
        if which == "timm":  # timm's own pre-logits embedding
            net = model.module.net  # type: ignore[union-attr]
            expected = net.forward_head(net.forward_features(x), pre_logits=True)
        else:  # open_clip's image embedding
            expected = model.module.clip.encode_image(x)  # type: ignore[union-attr]
    np.testing.assert_allclose(feats.values, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(feats.index, out.outputs[(model.name, "standard")].index)
    assert feats.values.shape == (len(feats.index), model.module.features(x[:1]).shape[1])


def test_features_only_pass_skips_the_per_image_record(
    data_root: Path, tiny_timm: LoadedModel
) -> None:
    found = discover(DATASETS.get("cue-conflict"), data_root / "cue-conflict")
    assert found is not None
    out = run_pass(
        found, [tiny_timm], RunSettings(workers=0, progress=False), channels=("features",)
    )
    assert out.outputs == {} and len(out.features[(tiny_timm.name, "standard")].index) == 6
    with pytest.raises(ValueError, match="unknown channel"):
        run_pass(found, [tiny_timm], RunSettings(workers=0, progress=False), channels=("x",))


@pytest.mark.parametrize(
    ("name", "tap", "index"),
    [
        ("timm:test_vit", "blocks.5", 5),
        ("timm:test_convnext", "stages.3", 3),
        ("open_clip:test-tiny-clip", "transformer.resblocks.1", 1),
    ],
)
def test_taps_are_the_layers_pooled_activations(
    data_root: Path, name: str, tap: str, index: int
) -> None:
    """Each tap equals the library's own intermediate output (``forward_intermediates``),
    averaged over positions / patch tokens."""
    from beyond_inet.models import LoadOptions, WeightsSource, load_model

    model = load_model(name, LoadOptions(weights=WeightsSource("random")))
    assert "taps" in model.module.capabilities and tap in model.module.tap_points()
    found = discover(DATASETS.get("imagenet-val"), data_root / "imagenet" / "val", limit=4)
    assert found is not None
    out = run_pass(
        found,
        [model],
        RunSettings(batch_size=2, workers=0, progress=False),
        channels=("taps",),
        taps={model.name: [tap]},
    )
    got = out.taps[(model.name, "standard")][tap]
    x = _inputs(found, model, got.index)
    with torch.no_grad():
        if name.startswith("timm"):
            net = model.module.net  # type: ignore[union-attr]
            kw = {"norm": False} if "vit" in name else {}
            (inter,) = net.forward_intermediates(x, indices=[index], intermediates_only=True, **kw)
        else:
            visual = model.module.clip.visual  # type: ignore[union-attr]
            (inter,) = visual.forward_intermediates(x, indices=[index], intermediates_only=True)[
                "image_intermediates"
            ]
    expected = inter.mean(dim=(2, 3))  # NCHW: mean over positions (patch tokens for ViTs)
    np.testing.assert_allclose(got.values, expected.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="has no tap"):
        run_pass(
            found,
            [model],
            RunSettings(workers=0, progress=False),
            channels=("taps",),
            taps={model.name: ["nope"]},
        )
