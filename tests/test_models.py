"""Model zoo: names, preprocessing provenance, weights from cache / checkpoint / nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from beyond_inet import models as M
from beyond_inet.models import (
    CheckpointMismatchError,
    LoadOptions,
    WeightsSource,
    WeightsUnavailableError,
    load_model,
    open_clip_family,
    resolve_spec,
    timm_family,
    weights,
)
from beyond_inet.models.timm_family import from_timm_config
from beyond_inet.registry import UnknownNameError


def test_paper_models_are_registered_with_their_labels() -> None:
    assert M.expand_model_names(["all"]) == [
        "deit3_21k",
        "convnext_base_21k",
        "vit_clip",
        "convnext_clip",
    ]
    s = resolve_spec("deit3_21k")
    assert (s.family, s.arch, s.tag, s.label) == (
        "timm",
        "deit3_base_patch16_224",
        "fb_in22k_ft_in1k",
        "ViT-sup",
    )
    assert resolve_spec("convnext_base_21k").label == "ConvNeXt-sup"
    c = resolve_spec("convnext_clip")
    assert (c.family, c.arch, c.tag, c.label) == (
        "open_clip",
        "convnext_base",
        "laion400m_s13b_b51k",
        "ConvNeXt-clip",
    )
    assert resolve_spec("vit_clip").tag == "laion400m_e31"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("deit3_2k", "deit3_21k"),
        ("timm:vit_bse_patch16_224", "vit_base_patch16_224"),
        ("open_clip:ViT-B-61:laion400m_e31", "ViT-B-16"),
    ],
)
def test_unknown_models_suggest_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError, match=f"Did you mean.*'{suggestion}'"):
        resolve_spec(name)


def test_installed_timm_builds_deit3() -> None:
    """easyrobust is installed without its timm==0.5.4 pin; modern timm must have DeiT3."""
    assert timm.is_model("deit3_base_patch16_224")
    m = timm.create_model("deit3_base_patch16_224", pretrained=False, num_classes=10, depth=1)
    assert m(torch.zeros(1, 3, 224, 224)).shape == (1, 10)


def test_paper_preprocessing_differs_from_timm_config() -> None:
    cfg = timm.models.get_pretrained_cfg("deit3_base_patch16_224.fb_in22k_ft_in1k").to_dict()
    weights_pp = from_timm_config(cfg)
    assert (weights_pp.resize_size, weights_pp.crop_size, weights_pp.interpolation) == (
        224,
        224,
        "bicubic",
    )
    paper = resolve_spec("deit3_21k").paper_preprocessing
    assert paper is not None
    assert (paper.resize_size, paper.crop_size, paper.interpolation) == (256, 224, "bilinear")
    assert resolve_spec("vit_clip").paper_preprocessing is None  # open_clip's own preprocess


def test_preprocessing_switch_on_a_loaded_paper_model() -> None:
    spec = resolve_spec("convnext_base_21k")
    small = M.ModelSpec("cnx", "timm", "test_convnext", None, "x", spec.paper_preprocessing)
    paper = timm_family.FAMILY.load(small, LoadOptions(weights=WeightsSource("random")))
    own = timm_family.FAMILY.load(
        small, LoadOptions(weights=WeightsSource("random"), preprocessing="weights")
    )
    assert paper.preprocessing == spec.paper_preprocessing
    assert own.preprocessing.source.startswith("timm pretrained_cfg")
    assert own.preprocessing.interpolation == "bicubic"
    assert paper.describe()["preprocessing"]["resize_size"] == 256


@pytest.fixture()
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    torch_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch"))
    yield tmp_path
    torch.hub.set_dir(torch_hub)


@pytest.mark.parametrize("name", ["deit3_21k", "vit_clip", "convnext_clip"])
def test_missing_weights_fail_fast_with_instructions(name: str, empty_caches: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as e:
        load_model(name)
    msg = str(e.value)
    assert name in msg and str(empty_caches / "hf") in msg
    assert "--checkpoint" in msg and "--random-weights" in msg and "HF_HOME" in msg


def test_unreachable_hub_is_detected_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    assert weights.hub_reachable(timeout=3) is False


def _seeded_test_vit(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("test_vit", pretrained=False).eval()


def test_weights_are_loaded_from_the_hub_cache(empty_caches: Path) -> None:
    """A model file in the Hugging Face cache layout is found and used offline."""
    src = _seeded_test_vit(1)
    snap = empty_caches / "hf" / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file(src.state_dict(), str(snap / "model.safetensors"))
    refs = snap.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    loaded = load_model("timm:test_vit")
    assert loaded.weights == "timm/test_vit"
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), src(x))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_gives_the_saved_models_outputs(tmp_path: Path, suffix: str) -> None:
    src = _seeded_test_vit(1)
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": src.state_dict()}, path)
    else:
        save_file(src.state_dict(), str(path))
    loaded = load_model("timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", path)))
    assert loaded.weights == f"checkpoint:sha256:{weights.sha256_file(path)}"
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), src(x))


def test_mismatched_checkpoint_names_the_keys(tmp_path: Path) -> None:
    other = timm.create_model("test_convnext", pretrained=False)
    path = tmp_path / "convnext.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_model("timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", path)))
    assert "missing keys [" in str(e.value) and "patch_embed.proj.weight" in str(e.value)
    assert "unexpected keys [" in str(e.value) and "stem." in str(e.value)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="not a readable PyTorch checkpoint"):
        load_model("timm:test_vit", LoadOptions(weights=WeightsSource("checkpoint", path)))
    with pytest.raises(FileNotFoundError):
        weights.read_state_dict(tmp_path / "absent.pt")


class _NotATensor:
    pass


def test_garbage_safetensors_and_pickled_objects_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(CheckpointMismatchError, match="as safetensors") as e:
        weights.read_state_dict(bad)
    assert "\n" not in str(e.value)
    obj = tmp_path / "objects.pt"
    torch.save({"w": torch.zeros(2), "cfg": _NotATensor()}, obj)
    with pytest.raises(CheckpointMismatchError, match="pickles objects other than tensors") as e:
        weights.read_state_dict(obj)
    assert "weights_only=False" not in str(e.value) and "weights_only" not in str(e.value)


def test_random_weights_are_recorded_and_deterministic(tiny_timm: M.LoadedModel) -> None:
    again = load_model("timm:test_vit", LoadOptions(weights=WeightsSource("random")))
    assert tiny_timm.is_random and tiny_timm.describe()["weights"] == "random"
    for a, b in zip(
        tiny_timm.module.state_dict().values(), again.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_clip_logit_scale_is_an_explicit_recorded_setting(tiny_clip: M.LoadedModel) -> None:
    assert tiny_clip.settings["logit_scale"] == 100.0
    half = open_clip_family.ZeroShotClassifier(
        tiny_clip.module.clip, tiny_clip.module.text_head, 50.0, "test-tiny-clip"
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(half(x) * 2, tiny_clip.module(x))
    pp = tiny_clip.preprocessing
    assert (pp.resize_size, pp.crop_size, pp.interpolation) == (64, 64, "bicubic")
    assert pp.source == "open_clip preprocess config"


def test_zero_shot_head_is_built_once_and_cached_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_clip: M.LoadedModel
) -> None:
    import open_clip.zero_shot_classifier as zsc

    calls: list[int] = []

    def fake_build(model, tokenizer, classnames, templates, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(templates))
        assert len(classnames) == 1000 and len(templates) == 80
        return torch.nn.functional.normalize(torch.randn(32, 1000), dim=0)

    monkeypatch.setattr(zsc, "build_zero_shot_classifier", fake_build)
    spec = resolve_spec("open_clip:test-tiny-clip")
    clip = tiny_clip.module.clip
    h1, p1 = open_clip_family.zero_shot_head(clip, spec, "checkpoint:sha256:aa", tmp_path)
    h2, p2 = open_clip_family.zero_shot_head(clip, spec, "checkpoint:sha256:aa", tmp_path)
    assert calls == [80] and p1 == p2 and Path(p1).is_file()
    torch.testing.assert_close(h1, h2)
    # other weights: a new head
    open_clip_family.zero_shot_head(clip, spec, "checkpoint:sha256:bb", tmp_path)
    assert len(calls) == 2


def test_open_clip_weights_are_found_in_the_hub_cache(empty_caches: Path) -> None:
    repo = empty_caches / "hf" / "models--laion--CLIP-convnext_base-laion400M-s13B-b51K"
    (repo / "snapshots" / "s1").mkdir(parents=True)
    (repo / "snapshots" / "s1" / "open_clip_pytorch_model.bin").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("s1")
    found = open_clip_family.FAMILY.cached_weights(resolve_spec("convnext_clip"), must_exist=True)
    assert found == str(repo / "snapshots" / "s1" / "open_clip_pytorch_model.bin")


def test_open_clip_names_need_a_known_tag() -> None:
    with pytest.raises(UnknownNameError, match="needs a pretrained tag"):
        load_model("open_clip:test-tiny-clip")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'laion400m_e3[12]'"):
        load_model("open_clip:ViT-B-16:laion400m_e3")
