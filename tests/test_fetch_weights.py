"""``python -m precompute --fetch-weights``: get exactly what a later offline run needs.

The hub is never reached: the Hugging Face cache is a temporary folder laid out as
``huggingface_hub`` lays it out (``models--<org>--<name>/snapshots/<rev>/<file>``), filled
with tiny weights written here.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import open_clip.pretrained
import open_clip.zero_shot_classifier as zsc
import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from beyond_inet.models import LoadOptions, load_model
from beyond_inet.models.open_clip_family import head_cache_path, register_bundled_configs
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import CUE_PAIRS, write_cue_conflict

TIMM_NAME = "timm:test_vit.r160_in1k"  # a real timm weight tag (hf hub timm/test_vit.r160_in1k)
CLIP_NAME = "open_clip:test-tiny-clip:tiny"


def _hf_file(cache: Path, repo: str, filename: str) -> Path:
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text("rev1")
    path = base / "snapshots" / "rev1" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def test_without_network_or_cache_it_fails_fast_naming_itself(
    offline_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--fetch-weights", "--model", TIMM_NAME]) == 2
    err = capsys.readouterr().err
    assert "not in the local cache" in err and "No dataset" not in err
    assert f"python -m precompute --fetch-weights --model {TIMM_NAME}" in err


def test_every_missing_weights_message_names_the_fetch_command(offline_cache: Path) -> None:
    for name in ("deit3_21k", "vit_clip"):
        with pytest.raises(Exception) as e:
            load_model(name)
        assert f"python -m precompute --fetch-weights --model {name}" in str(e.value)


def test_cached_timm_weights_are_verified_then_a_run_needs_no_network(
    offline_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(1)
    net = timm.create_model("test_vit")
    save_file(
        net.state_dict(),
        str(_hf_file(offline_cache, "timm/test_vit.r160_in1k", "model.safetensors")),
    )
    assert main(["--fetch-weights", "--model", TIMM_NAME]) == 0  # no --data-root needed
    captured = capsys.readouterr()
    assert "weights ready" in captured.err and "1 model(s)" in captured.out
    root = tmp_path / "data"
    write_cue_conflict(root / "cue-conflict", CUE_PAIRS[:2])
    store = Store(tmp_path / "r.duckdb")
    assert (
        main(
            [
                "--model",
                TIMM_NAME,
                "--data-root",
                str(root),
                "--store",
                str(store.path),
                "--workers",
                "0",
                "--quiet",
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    runs = store.query("SELECT weights, random_weights FROM runs")
    assert runs.to_dict("records") == [
        {"weights": "timm/test_vit.r160_in1k", "random_weights": False}
    ]


def test_clip_fetch_caches_the_zero_shot_head_once(
    offline_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register_bundled_configs()
    tags = {"tiny": {"hf_hub": "beyond-inet/test-tiny-clip/"}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "test-tiny-clip", tags)
    torch.manual_seed(2)
    clip = open_clip.create_model("test-tiny-clip", pretrained=None)
    torch.save(
        clip.state_dict(),
        _hf_file(offline_cache, "beyond-inet/test-tiny-clip", "open_clip_pytorch_model.bin"),
    )
    builds: list[int] = []

    def fake_build(model, tokenizer, classnames, templates, **kw):  # type: ignore[no-untyped-def]
        builds.append(len(classnames) * len(templates))
        return torch.nn.functional.normalize(torch.randn(32, 1000), dim=0)

    monkeypatch.setattr(zsc, "build_zero_shot_classifier", fake_build)
    cache_dir = tmp_path / "heads"
    argv = ["--fetch-weights", "--model", CLIP_NAME, "--cache-dir", str(cache_dir)]
    assert main(argv) == 0
    assert builds == [80_000] and "zero-shot head written" in capsys.readouterr().err
    assert main(argv) == 0  # already there: verified, not rebuilt
    assert builds == [80_000] and "zero-shot head cached" in capsys.readouterr().err
    loaded = load_model(CLIP_NAME, LoadOptions(cache_dir=cache_dir))
    assert builds == [80_000] and loaded.weights == "open_clip/test-tiny-clip/tiny"
    assert Path(loaded.settings["head_cache"]) == head_cache_path(
        loaded.spec, loaded.weights, cache_dir
    )


def test_fetch_refuses_checkpoint_and_random(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fetch-weights", "--model", TIMM_NAME, "--random-weights"]) == 2
    assert "does not combine" in capsys.readouterr().err
