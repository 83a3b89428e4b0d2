"""Fidelity to the paper's protocol: cue-conflict fed at native size, precision, ImageNet-C.

Oracles are direct forward passes of the same weights with the protocol written out by hand
(torchvision ``ToTensor`` + ``Normalize`` as model-vs-human; autocast around the backbone only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

from beyond_inet.datasets import DATASETS, discover
from beyond_inet.datasets.cue_conflict import CATEGORIES, category_imagenet_indices
from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import LoadOptions, WeightsSource, load_model
from beyond_inet.models.timm_family import TimmClassifier
from beyond_inet.run.engine import RunSettings, run_pass
from beyond_inet.store import Store
from beyond_inet.transforms.preprocess import IMAGENET_MEAN, IMAGENET_STD, standard_transform
from precompute.cli import main
from tests.conftest import CUE_PAIRS, write_cue_conflict

QUIET = ["--workers", "0", "--bootstrap", "0", "--quiet", "--no-invariance"]


@pytest.fixture(scope="module")
def deit3_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """The paper's ViT architecture (deit3_base_patch16_224) with seeded random weights, as a
    checkpoint file, and the same network for the oracle."""
    torch.manual_seed(0)
    net = timm.create_model("deit3_base_patch16_224").eval()
    with torch.no_grad():  # fresh DeiT3s are near-constant (layer scale 1e-6): make it see
        for name, param in net.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(0.2)
        net.head.weight.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("deit3") / "deit3.safetensors"
    save_file(net.state_dict(), str(path))
    return path, net


def test_cue_conflict_stimuli_are_fed_as_model_vs_human_does(
    deit3_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    ckpt, net = deit3_checkpoint
    root = tmp_path / "data"
    ids = write_cue_conflict(root / "cue-conflict", CUE_PAIRS[:4])
    store = Store(tmp_path / "s.duckdb")
    assert (
        main(
            [
                "--model",
                "deit3_21k",
                "--checkpoint",
                str(ckpt),
                "--data-root",
                str(root),
                "--dataset",
                "cue-conflict",
                "--store",
                str(store.path),
                *QUIET,
            ]
        )
        == 0
    )
    p = store.query("SELECT * FROM predictions ORDER BY sample_id")
    assert p["sample_id"].tolist() == sorted(ids)
    # oracle: ToTensor + Normalize on the 224 px PNG, no resize, no crop
    to_input = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    x = torch.stack(
        [to_input(Image.open(root / "cue-conflict" / s).convert("RGB")) for s in p["sample_id"]]
    )
    with torch.no_grad():
        probs = torch.softmax(net(x), -1)
    top_p, top_i = probs.topk(5, -1)
    np.testing.assert_array_equal(np.stack(p["topk_idx"]), top_i.numpy())
    np.testing.assert_allclose(np.stack(p["topk_prob"]), top_p.numpy(), rtol=1e-4, atol=1e-7)
    indices = category_imagenet_indices()  # model-vs-human: mean probability per category
    means = np.stack([probs.numpy()[:, list(indices[c])].mean(1) for c in CATEGORIES], 1)
    decisions = np.asarray(CATEGORIES)[means.argmax(1)]
    assert p["decision"].tolist() == decisions.tolist()
    # the ImageNet recipe (resize 256, crop 224) is measurably different: the test can fail
    imagenet = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), to_input])
    x_old = torch.stack(
        [imagenet(Image.open(root / "cue-conflict" / s).convert("RGB")) for s in p["sample_id"]]
    )
    with torch.no_grad():
        old = torch.softmax(net(x_old), -1)
    assert (old - probs).abs().max() > 100 * (1e-4 * probs.max() + 1e-7)
    assert probs.max() > 2 / 1000  # not a uniform output: the comparisons above mean something
    pp = json.loads(store.query("SELECT preprocessing FROM runs")["preprocessing"].iloc[0])
    assert (pp["resize_mode"], pp["crop_size"], pp["resize_size"]) == ("exact", 224, 224)
    assert pp["mean"] == list(IMAGENET_MEAN) and "native-size stimuli" in pp["source"]


def test_a_model_with_another_input_size_gets_a_plain_resize(tiny_clip) -> None:
    """A 64 px model sees the whole 224 px stimulus resized to 64 x 64 (no crop)."""
    from beyond_inet.datasets import dataset_preprocessing
    from beyond_inet.transforms.preprocess import resize_exact, to_normalized_float

    spec = DATASETS.get("cue-conflict")
    pp = dataset_preprocessing(spec, tiny_clip.preprocessing)
    img = pil_to_tensor(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    )
    out = standard_transform(img, pp)
    assert out.shape == (3, 64, 64)
    torch.testing.assert_close(out, to_normalized_float(resize_exact(img, 64, 64, pp), pp))
    assert (
        dataset_preprocessing(DATASETS.get("imagenet-val"), tiny_clip.preprocessing)
        == tiny_clip.preprocessing
    )


# ---------------------------------------------------------------------------- precision


def test_bf16_runs_the_backbone_in_bf16_and_the_head_in_fp32(
    trained_checkpoint: Path, trained_val_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(
        "timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", trained_checkpoint))
    )
    seen: list[tuple[str, torch.dtype, bool]] = []
    head = TimmClassifier.head

    def spy_head(self: TimmClassifier, t: torch.Tensor) -> torch.Tensor:
        seen.append(("head", t.dtype, torch.is_autocast_enabled("cpu")))
        return head(self, t)

    def spy_linear(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        seen.append(("backbone matmul", out.dtype, torch.is_autocast_enabled("cpu")))

    monkeypatch.setattr(TimmClassifier, "head", spy_head)
    model.module.net.blocks[0].attn.qkv.register_forward_hook(spy_linear)
    found = discover(DATASETS.get("imagenet-val"), trained_val_root / "imagenet" / "val")
    run_pass(found, [model], RunSettings(workers=0, progress=False, precision="bf16"))
    assert set(seen) == {("backbone matmul", torch.bfloat16, True), ("head", torch.float32, False)}
    seen.clear()
    run_pass(found, [model], RunSettings(workers=0, progress=False, precision="fp32"))
    assert {s[1:] for s in seen} == {(torch.float32, False)}


def test_precision_is_recorded_part_of_the_run_and_matches_a_direct_forward(
    trained_checkpoint: Path, trained_val_root: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "p.duckdb")
    base = [
        "--model",
        "timm:test_vit",
        "--checkpoint",
        str(trained_checkpoint),
        "--data-root",
        str(trained_val_root),
        "--dataset",
        "imagenet-val",
        "--store",
        str(store.path),
        *QUIET,
    ]
    assert main(base) == 0
    assert main([*base, "--precision", "bf16"]) == 0  # another run, not a skip
    runs = store.query("SELECT run_id, run_key, precision FROM runs ORDER BY precision")
    assert runs["precision"].tolist() == ["bf16", "fp32"] and runs["run_key"].nunique() == 2
    p = store.query(
        "SELECT r.precision, p.sample_id, p.pred, p.confidence, p.correct FROM "
        "predictions p JOIN runs r USING (run_id) ORDER BY sample_id"
    )
    bf16, fp32 = (p[p["precision"] == k].reset_index(drop=True) for k in ("bf16", "fp32"))
    assert 0.5 < fp32["correct"].mean() < 1.0  # the trained model: right, not always
    assert (bf16["pred"] == fp32["pred"]).mean() >= 0.9
    # oracle for bf16: backbone under CPU bf16 autocast, forward_head in fp32
    model = load_model(
        "timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", trained_checkpoint))
    )
    root = trained_val_root / "imagenet" / "val"
    x = torch.stack(
        [
            standard_transform(pil_to_tensor(load_rgb(root / s)), model.preprocessing)
            for s in bf16["sample_id"]
        ]
    )
    net = model.module.net
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t = net.forward_features(x)
        probs = torch.softmax(net.forward_head(t.float()).float(), -1)
    np.testing.assert_array_equal(bf16["pred"], probs.argmax(-1).numpy())
    np.testing.assert_allclose(bf16["confidence"], probs.max(-1).values.numpy(), rtol=1e-5)
