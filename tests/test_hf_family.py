"""The Hugging Face family (``hf:<repo id>``) on tiny random transformers models saved into a
Hugging Face cache layout here: the real offline loading path, no network.

Oracles are transformers itself: the model's own forward (loaded straight from the saved
files, not through our loader), its own image processor's ``pixel_values``, its own
``hidden_states``; and the stored predictions of a ``python -m precompute`` run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import constants as hf_constants
from PIL import Image
from transformers import (
    AutoImageProcessor,
    ConvNextConfig,
    ConvNextForImageClassification,
    ConvNextImageProcessor,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from beyond_inet.datasets.decode import load_rgb, pil_to_tensor
from beyond_inet.models import (
    LoadOptions,
    UnsupportedModelError,
    WeightsSource,
    WeightsUnavailableError,
    fetch_weights,
    load_model,
    resolve_spec,
)
from beyond_inet.models.hf_family import from_hf_image_processor
from beyond_inet.registry import UnknownNameError
from beyond_inet.store import Store
from beyond_inet.transforms.preprocess import standard_transform
from tests.conftest import REPO

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VIT, CNX, HEAD21K, NO_WEIGHTS = "tiny/vit", "tiny/convnext", "tiny/vit-21k", "tiny/no-weights"
PROCESSOR = "preprocessor_config.json"
#: ours vs transformers' torchvision backend: the same uint8 resampling kernels; only the
#: normalisation's float rounding differs ((x/255 - m)/s vs its fused (x - 255m)/(255s))
ATOL = 1e-5


def _vit_config(num_labels: int = 1000) -> ViTConfig:
    return ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_labels,
    )


def _save_repo(cache: Path, repo: str, parts: list[object], refs: tuple[str, ...]) -> Path:
    """``parts`` (models / configs / processors) saved as snapshot ``COMMIT`` of ``repo`` in
    the Hugging Face cache layout (``models--org--name/{refs,snapshots}``)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / COMMIT
    for part in parts:
        part.save_pretrained(snap)  # type: ignore[attr-defined]
    (root / "refs").mkdir(parents=True)
    for ref in refs:
        (root / "refs" / ref).write_text(COMMIT)
    return snap


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache with four tiny repos: a ViT (also at revision ``v1``), a
    ConvNeXt, a 21k-class ViT (config only) and a config without weights."""
    cache = tmp_path_factory.mktemp("hf-cache")
    torch.manual_seed(12345)  # not RANDOM_SEED: the saved weights differ from --random-weights
    vit_proc = ViTImageProcessor(size={"height": 32, "width": 32})
    _save_repo(cache, VIT, [ViTForImageClassification(_vit_config()), vit_proc], ("main", "v1"))
    cnx = ConvNextForImageClassification(
        ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=1000)
    )
    cnx_proc = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)
    _save_repo(cache, CNX, [cnx, cnx_proc], ("main",))
    _save_repo(cache, HEAD21K, [_vit_config(21843), vit_proc], ("main",))
    _save_repo(cache, NO_WEIGHTS, [_vit_config(), vit_proc], ("main",))
    return cache


@pytest.fixture(autouse=True)
def use_cache(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return hf_cache


def _snapshot(cache: Path, repo: str) -> Path:
    return cache / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- names


def test_names_parse_and_each_family_formats_its_hub_id() -> None:
    s = resolve_spec("hf:google/vit-base-patch16-224@abc123")
    assert (s.family, s.arch, s.tag) == ("hf", "google/vit-base-patch16-224", "abc123")
    assert s.hub_id == "google/vit-base-patch16-224@abc123"
    assert resolve_spec("hf:facebook/convnext-base-224-22k-1k").hub_id == (
        "facebook/convnext-base-224-22k-1k"
    )
    # the moved formatting, unchanged for the other families
    assert resolve_spec("deit3_21k").hub_id == "timm/deit3_base_patch16_224.fb_in22k_ft_in1k"
    assert resolve_spec("vit_clip").hub_id == "open_clip/ViT-B-16/laion400m_e31"


@pytest.mark.parametrize("name", ["hf:", "hf:not a repo!", "hf:a/b/c", "hf:org/name@"])
def test_malformed_names_fail_in_one_line(name: str) -> None:
    with pytest.raises(UnknownNameError) as e:
        resolve_spec(name)
    assert "hf:" in _one_line(e)


def test_unknown_name_hint_lists_every_registered_family() -> None:
    with pytest.raises(UnknownNameError) as e:
        resolve_spec("vit_base_hf")
    msg = _one_line(e)
    for syntax in ("'timm:<name>'", "'open_clip:<arch>:<tag>'", "'hf:<repo id>[@<revision>]'"):
        assert syntax in msg
    # the hint comes from the registry alone: no model library is imported for it
    code = (
        "import sys\nfrom beyond_inet.models import resolve_spec\ntry:\n"
        "    resolve_spec('vit_base_hf')\nexcept KeyError:\n    pass\n"
        "print(sorted(m for m in ('torch', 'timm', 'open_clip', 'transformers') "
        "if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


# --------------------------------------------------------------------------- loading


def _oracle_model(cache: Path, repo: str) -> torch.nn.Module:
    """The saved model loaded straight from its snapshot folder (not through our loader)."""
    cls = ViTForImageClassification if repo == VIT else ConvNextForImageClassification
    return cls.from_pretrained(_snapshot(cache, repo)).eval()


@pytest.mark.parametrize(("repo", "reads"), [(VIT, "cls"), (CNX, "pooler")])
def test_classifier_equals_the_models_own_forward(use_cache: Path, repo: str, reads: str) -> None:
    loaded = load_model(f"hf:{repo}")
    assert loaded.weights == f"{repo}@{COMMIT}" and not loaded.is_random
    module, oracle = loaded.module, _oracle_model(use_cache, repo)
    assert module.reads == reads  # type: ignore[attr-defined]
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = oracle(pixel_values=x, output_hidden_states=True)
        base = oracle.base_model(x)
        logits = module(x)
        feats = module.features(x)
        taps = module.tap_points()
        seen: dict[str, torch.Tensor] = {}
        last = list(taps)[-1]
        hook = taps[last].register_forward_hook(lambda _m, _i, o: seen.update(t=o))
        module.trunk(x)
        hook.remove()
    assert logits.shape == (3, 1000)
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-6)
    pre_logits = base.last_hidden_state[:, 0] if reads == "cls" else base.pooler_output
    torch.testing.assert_close(feats, pre_logits, rtol=0, atol=1e-6)
    assert list(taps) == (
        ["layers.0", "layers.1"] if repo == VIT else ["encoder.stages.0", "encoder.stages.1"]
    )
    torch.testing.assert_close(seen["t"], out.hidden_states[-1], rtol=0, atol=1e-6)
    assert module.prefix_tokens == (1 if repo == VIT else 0)
    assert loaded.describe()["family"] == "hf"
    assert loaded.settings["architecture"] == type(oracle).__name__


def test_vit_runs_at_other_input_sizes_as_transformers_does(use_cache: Path) -> None:
    module, oracle = load_model(f"hf:{VIT}").module, _oracle_model(use_cache, VIT)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = oracle(pixel_values=x, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)


def test_random_checkpoint_and_revision_weights(use_cache: Path, tmp_path: Path) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    random = LoadOptions(weights=WeightsSource("random"))
    a, b = load_model(f"hf:{VIT}", random), load_model(f"hf:{VIT}", random)
    hub = load_model(f"hf:{VIT}@v1")  # a named revision (refs/v1) of the same snapshot
    assert a.weights == "random" and a.is_random and hub.weights == f"{VIT}@{COMMIT}"
    path = tmp_path / "vit.pt"
    torch.save(_oracle_model(use_cache, VIT).state_dict(), path)
    ckpt = load_model(f"hf:{VIT}", LoadOptions(weights=WeightsSource("checkpoint", path)))
    assert ckpt.weights.startswith("checkpoint:sha256:")
    # random weights need only the config (and the image processor)
    assert load_model(f"hf:{NO_WEIGHTS}", random).is_random
    with torch.no_grad():
        torch.testing.assert_close(a.module(x), b.module(x), rtol=0, atol=0)  # seeded
        assert not torch.allclose(a.module(x), hub.module(x))
        torch.testing.assert_close(ckpt.module(x), hub.module(x), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- preprocessing


def _image(h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


#: (h, w) sizes: upscales, downscales, portrait and landscape. For ConvNeXt (shorter side to
#: 36, center crop 32) each leaves a crop margin with (margin % 4) != 3, where transformers
#: and torchvision place the crop alike (see test_crop_offset_difference_is_as_documented).
SIZES = [(20, 20), (48, 64), (64, 40), (45, 70), (100, 77)]


@pytest.mark.parametrize("repo", [VIT, CNX])
def test_preprocessing_equals_the_image_processors_pixel_values(use_cache: Path, repo: str) -> None:
    pp = load_model(f"hf:{repo}").preprocessing
    assert pp.source.startswith("Hugging Face image processor")
    snap = _snapshot(use_cache, repo)
    fast = AutoImageProcessor.from_pretrained(snap)  # transformers' default backend
    pil = AutoImageProcessor.from_pretrained(snap, backend="pil")
    # PIL resamples through 8-bit, torchvision's uint8 kernels match it within one level
    one_level = 1.01 / (255 * min(pp.std))
    for i, (h, w) in enumerate(SIZES):
        img = _image(h, w, i)
        ours = standard_transform(pil_to_tensor(img), pp)
        theirs = fast(images=img, return_tensors="pt")["pixel_values"][0]
        assert ours.shape == theirs.shape == (3, 32, 32)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=ATOL)
        by_pil = pil(images=img, return_tensors="pt")["pixel_values"][0]
        assert float((ours - by_pil).abs().max()) <= one_level


def test_convnext_recipe_is_crop_pct_then_center_crop() -> None:
    pp = from_hf_image_processor(ConvNextImageProcessor(size={"shortest_edge": 224}))
    assert (pp.resize_size, pp.crop_size, pp.interpolation, pp.resize_mode) == (
        256,
        224,
        "bicubic",
        "shorter",
    )
    big = from_hf_image_processor(ConvNextImageProcessor(size={"shortest_edge": 384}))
    assert (big.resize_size, big.crop_size, big.resize_mode) == (384, 384, "exact")
    vit = from_hf_image_processor(ViTImageProcessor())
    assert (vit.crop_size, vit.resize_mode, vit.interpolation, vit.mean) == (
        224,
        "exact",
        "bilinear",
        (0.5, 0.5, 0.5),
    )


def test_crop_offset_difference_is_as_documented() -> None:
    """A crop margin of 19 px (19 % 4 == 3): transformers starts the crop at 9, torchvision
    (ours) at round(9.5) = 10; everything else is equal."""
    proc = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)
    pp = from_hf_image_processor(proc)
    img = _image(48, 68, 7)  # -> 36 x 51, crop 32: margins 4 and 19
    ours = standard_transform(pil_to_tensor(img), pp)
    theirs = proc(images=img, return_tensors="pt")["pixel_values"][0]
    assert not torch.allclose(ours, theirs, atol=ATOL)
    torch.testing.assert_close(ours[..., :-1], theirs[..., 1:], rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("proc", "why"),
    [
        (ViTImageProcessor(size={"height": 32, "width": 48}), "non-square"),
        (ViTImageProcessor(resample=0), "'nearest'"),
        (ViTImageProcessor(do_resize=False), "does not resize"),
        (ViTImageProcessor(size={"shortest_edge": 32}), "without a center crop"),
        (ViTImageProcessor(do_rescale=False), "does not rescale"),
    ],
)
def test_inexpressible_processors_are_refused(proc: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        from_hf_image_processor(proc)


# --------------------------------------------------------------------------- refusals


def test_a_21k_head_is_refused_in_one_line() -> None:
    with pytest.raises(UnsupportedModelError) as e:
        load_model(f"hf:{HEAD21K}", LoadOptions(weights=WeightsSource("random")))
    assert "21843-class head" in _one_line(e) and "1000 ImageNet-1k" in str(e.value)


def test_uncached_models_fail_fast_with_what_to_run(
    use_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("hf:nobody/absent", f"hf:{NO_WEIGHTS}", f"hf:{VIT}@no-such-revision"):
        with pytest.raises(WeightsUnavailableError) as e:
            load_model(name)
        msg = _one_line(e)
        assert name in msg and str(use_cache) in msg and "--fetch-weights" in msg
        with pytest.raises(WeightsUnavailableError):
            fetch_weights(name, log=lambda _m: None)
    # with the hub reachable the load stays offline and says to fetch first
    monkeypatch.setattr("beyond_inet.models.hf_family.hub_reachable", lambda: True)
    with pytest.raises(WeightsUnavailableError) as e:
        load_model("hf:nobody/absent")
    assert "load offline only" in _one_line(e) and "--fetch-weights" in str(e.value)
    assert "--random-weights need it too" in str(e.value)  # no config: random weights can't
    with pytest.raises(WeightsUnavailableError) as e:
        load_model(f"hf:{NO_WEIGHTS}")
    assert "pass --checkpoint PATH / --random-weights" in str(e.value)  # config is there


def test_fetch_of_a_cached_model_verifies_it_offline() -> None:
    logs: list[str] = []
    fetch_weights(f"hf:{CNX}", log=logs.append)
    assert logs and "weights ready" in logs[-1] and COMMIT in logs[-1]


def test_fetch_downloads_config_processor_and_safetensors_only(
    use_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub stood in for by a copy of the tiny ViT's snapshot: what fetch asks for, what it
    logs, and that the fetched repo then loads offline."""
    asked: dict[str, object] = {}
    remote = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "README.md"]

    def list_files(repo_id: str, revision: str | None = None) -> list[str]:
        return remote + ([] if repo_id.endswith("no-processor") else [PROCESSOR])

    def snapshot_download(repo_id: str, **kw: object) -> str:
        asked.update(kw)
        dst = _snapshot(Path(str(kw["cache_dir"])), repo_id)
        shutil.copytree(_snapshot(use_cache, VIT), dst)
        (dst.parents[1] / "refs").mkdir()
        (dst.parents[1] / "refs" / "main").write_text(COMMIT)
        return str(dst)

    monkeypatch.setattr("beyond_inet.models.hf_family.hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    logs: list[str] = []
    fetch_weights("hf:tiny/fetched", log=logs.append)
    patterns = set(asked["allow_patterns"])  # type: ignore[call-overload]
    assert {"config.json", PROCESSOR, "model.safetensors"} <= patterns
    assert not any(p.endswith((".bin", ".h5")) for p in patterns)
    assert asked["cache_dir"] == str(use_cache)
    assert any(f"fetched config.json, model.safetensors, {PROCESSOR}" in m for m in logs)
    assert load_model("hf:tiny/fetched").weights == f"tiny/fetched@{COMMIT}"
    with pytest.raises(UnsupportedModelError) as e:
        fetch_weights("hf:tiny/no-processor", log=logs.append)
    assert PROCESSOR in _one_line(e)


# --------------------------------------------------------------------------- end to end


def test_precompute_stores_an_hf_run(data_root: Path, use_cache: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    env = {**os.environ, "HF_HUB_CACHE": str(use_cache), "HF_HUB_OFFLINE": "1"}
    args = ["--model", f"hf:{VIT}", "--data-root", str(data_root), "--dataset", "imagenet-val"]
    args += ["--store", str(store), "--workers", "0", "--bootstrap", "20", "--limit", "6"]
    r = subprocess.run(
        [sys.executable, "-m", "precompute", *args, "--quiet", "--no-invariance"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = Store(store).query("SELECT * FROM runs")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["model"] == f"hf:{VIT}" and run["weights"] == f"{VIT}@{COMMIT}"
    assert not run["random_weights"] and run["n_samples"] + run["n_failed"] == 6
    assert "transformers" in json.loads(run["library_versions"])
    assert json.loads(run["settings"])["architecture"] == "ViTForImageClassification"
    assert json.loads(run["preprocessing"])["source"].startswith("Hugging Face image processor")
    # the stored predictions are transformers' own: its processor, its model
    p = Store(store).query("SELECT sample_id, pred, confidence FROM predictions")
    assert len(p) == run["n_samples"] > 0
    proc = AutoImageProcessor.from_pretrained(_snapshot(use_cache, VIT))
    images = [load_rgb(data_root / "imagenet" / "val" / s) for s in p["sample_id"]]
    with torch.no_grad():
        x = proc(images=images, return_tensors="pt")["pixel_values"]
        probs = _oracle_model(use_cache, VIT)(pixel_values=x).logits.softmax(-1)
    assert p["pred"].tolist() == probs.argmax(-1).tolist()
    np.testing.assert_allclose(p["confidence"], probs.max(-1).values.numpy(), rtol=1e-5)
