"""Invariance views: names, geometry, agreement with a plain PIL implementation, models at
other input sizes, the agreement evaluation and the CLI grid options."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import skimage.data
import timm
import torch
from open_clip.model import resize_pos_embed
from PIL import Image

from beyond_inet.datasets import DATASETS
from beyond_inet.datasets.decode import pil_to_tensor
from beyond_inet.models import (
    PAPER_SUPERVISED_PREPROCESSING,
    LoadedModel,
    LoadOptions,
    WeightsSource,
    load_model,
)
from beyond_inet.models.contract import Classifier
from beyond_inet.models.open_clip_family import register_bundled_configs
from beyond_inet.records import ImageRecords
from beyond_inet.registry import UnknownNameError
from beyond_inet.run.engine import RunSettings
from beyond_inet.run.plan import evaluations_for, runnable_views
from beyond_inet.scoring.evaluations import ScoringOptions, agreement
from beyond_inet.transforms.preprocess import Preprocessing, standard_transform
from beyond_inet.transforms.views import (
    STANDARD,
    VIEW_GRIDS,
    ViewError,
    grid_views,
    parse_view,
    resolution_resize,
    scaled_resize,
    shift_window,
)
from precompute.cli import build_parser, invariance_views

SUP = PAPER_SUPERVISED_PREPROCESSING
CLIP = Preprocessing(
    224,
    224,
    "bicubic",
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
    source="open_clip (CLIP) 224",
)
DEFAULT_VIEWS = grid_views(VIEW_GRIDS)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
#: (device, input dtype): uint8 on the CPU takes torchvision's native kernels; float levels
#: take the two-pass PIL resampling that CUDA runs, so the CPU checks the CUDA algorithm too.
INPUTS = [(d, t) for d in DEVICES for t in ("uint8", "float")]

# ---------------------------------------------------------------------------- names


def test_default_grids_are_the_papers() -> None:
    assert DEFAULT_VIEWS == (
        "scale:1",
        "scale:1.25",
        "scale:1.5",
        "scale:2",
        "scale:3",
        "shift:0",
        "shift:5",
        "shift:30",
        "shift:75",
        "shift:100",
        "resolution:112",
        "resolution:224",
        "resolution:336",
        "resolution:512",
        "resolution:640",
    )
    assert grid_views({"scale": (1.0, 1, 1.50), "shift": (), "resolution": (336,)}) == (
        "scale:1",
        "scale:1.5",
        "resolution:336",
    )


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("standard", "standard"),
        ("scale:1.0", "scale:1"),
        ("scale:1.50", "scale:1.5"),
        ("shift:30", "shift:30"),
        ("shift:-5", "shift:-5"),
        ("resolution:336", "resolution:336"),
        (" scale: 2 ", "scale:2"),
    ],
)
def test_view_names_are_canonical(name: str, canonical: str) -> None:
    assert parse_view(name).name == canonical


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("scale:abc", "e.g. 'scale:1.5'"),
        ("scale:", "e.g. 'scale:1.5'"),
        ("scale:nan", "needs a number"),
        ("scale:-1", "must be > 0"),
        ("scale:0", "must be > 0"),
        ("shift:3.5", "needs an integer, e.g. 'shift:30'"),
        ("shift:x", "shift:30"),
        ("resolution:0", "1..4096"),
        ("resolution:1.5", "e.g. 'resolution:336'"),
        ("resolution:99999", "1..4096"),
        ("standard:1", "takes no argument"),
    ],
)
def test_malformed_views_are_clear_errors(name: str, needle: str) -> None:
    with pytest.raises(ViewError) as err:
        parse_view(name)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("scal:1.5", "scale"),
        ("shfit:5", "shift"),
        ("resolutoin:112", "resolution"),
    ],
)
def test_unknown_families_suggest_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError, match=f"Did you mean '{suggestion}'"):
        parse_view(name)


# ---------------------------------------------------------------------------- geometry


def test_scale_and_resolution_sizes() -> None:
    assert [scaled_resize(SUP, s) for s in VIEW_GRIDS["scale"]] == [256, 320, 384, 512, 768]
    assert [scaled_resize(CLIP, s) for s in VIEW_GRIDS["scale"]] == [224, 280, 336, 448, 672]
    # the paper: Resize(int(r * 256 / 224)), CenterCrop(r); CLIP's crop ratio is 1
    assert [resolution_resize(SUP, int(r)) for r in VIEW_GRIDS["resolution"]] == [
        128,
        256,
        384,
        585,
        731,
    ]
    assert [resolution_resize(CLIP, int(r)) for r in VIEW_GRIDS["resolution"]] == [
        112,
        224,
        336,
        512,
        640,
    ]
    for name in DEFAULT_VIEWS:
        view = parse_view(name)
        for pp in (SUP, CLIP):
            expected = int(name.split(":")[1]) if name.startswith("resolution") else 224
            assert view.input_size(pp) == expected
            img = torch.zeros(3, 375, 500, dtype=torch.uint8)
            assert tuple(view.transform(img, pp).shape) == (3, expected, expected)


def test_shift_window_moves_along_the_longer_side() -> None:
    # landscape 500x375, R=256, C=224: the standard crop is 224 * 375/256 = 328.1 px of the
    # original, its left edge at (500 - 328.125) / 2 = 85.9, top at 16 * 375/256 = 23.4
    assert shift_window(375, 500, SUP, 0) == (23, 85, 328)
    assert shift_window(375, 500, SUP, 30) == (23, 115, 328)
    # portrait 333x500 and square images move down
    assert shift_window(500, 333, SUP, 0) == (104, 20, 291)  # (500 - 291.4) / 2, 16 * 333/256
    assert shift_window(500, 333, SUP, 75) == (179, 20, 291)
    assert shift_window(400, 400, SUP, 5) == (30, 25, 350)
    # CLIP (R = C): the window is the whole shorter side
    assert shift_window(375, 500, CLIP, 100) == (0, 162, 375)


def test_identical_views_give_identical_inputs() -> None:
    img = pil_to_tensor(_photos()["landscape 500x375"])
    for pp in (SUP, CLIP):
        std = standard_transform(img, pp)
        assert torch.equal(parse_view("scale:1").transform(img, pp), std)
        assert torch.equal(parse_view("standard").transform(img, pp), std)
    # resolution:224 is the standard recipe for both 256/224 and 224/224 models
    res224 = parse_view("resolution:224").transform(img, SUP)
    assert torch.equal(res224, standard_transform(img, SUP))
    # shift:0 crops first and resizes after: close to standard, not identical by definition
    diff = (parse_view("shift:0").transform(img, SUP) - standard_transform(img, SUP)).abs()
    assert 0 < float(diff.mean()) < 0.05


def test_shift_is_not_clamped_outside_the_image() -> None:
    img = torch.full((3, 375, 500), 200, dtype=torch.uint8)
    out = parse_view("shift:1000").transform(img, SUP)  # the window lies right of the image
    black = standard_transform(torch.zeros_like(img), SUP)
    torch.testing.assert_close(out, black)
    part = parse_view("shift:100").transform(img, SUP)  # 14 px past the right edge: black strip
    assert torch.allclose(part[:, :, -5:], black[:, :, -5:])
    assert not torch.allclose(part[:, :, :100], black[:, :, :100])


# ---------------------------------------------------------------------------- PIL oracle

#: Tolerance of the PIL comparison, in uint8 levels (0..255) after undoing the
#: normalisation: every pixel within 2 levels, mean absolute difference below 0.05 levels.
PIL_MAX_LEVELS = 2.0
PIL_MEAN_LEVELS = 0.05
_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _photos() -> dict[str, Image.Image]:
    """Real photos at typical ImageNet sizes: landscape, portrait, square."""
    return {
        "landscape 500x375": Image.fromarray(skimage.data.coffee()).resize(
            (500, 375), Image.LANCZOS
        ),
        "portrait 333x500": Image.fromarray(skimage.data.astronaut()[:, 80:421]).resize(
            (333, 500), Image.LANCZOS
        ),
        "square 400x400": Image.fromarray(skimage.data.rocket()[:, 100:527]).resize(
            (400, 400), Image.LANCZOS
        ),
    }


def _pil_resize_shorter(im: Image.Image, size: int, pp: Preprocessing) -> Image.Image:
    w, h = im.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return im.resize(new, _PIL_FILTERS[pp.interpolation])


def _pil_center_crop(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    left, top = round((w - size) / 2), round((h - size) / 2)  # torchvision's CenterCrop
    return im.crop((left, top, left + size, top + size))


def pil_view(name: str, im: Image.Image, pp: Preprocessing) -> np.ndarray:
    """A straightforward PIL implementation of each definition -> HWC float uint8 levels."""
    family, _, arg = name.partition(":")
    r_size, c_size = pp.resize_size, pp.crop_size
    if family == "scale":
        out = _pil_center_crop(_pil_resize_shorter(im, int(float(arg) * r_size), pp), c_size)
    elif family == "resolution":
        r = int(arg)
        out = _pil_center_crop(_pil_resize_shorter(im, int(r * r_size / c_size), pp), r)
    else:  # shift: the paper's CropShift, written out
        n, (w, h) = int(arg), im.size
        if w > h:
            top, left = (r_size - c_size) / 2 * h / r_size, (w - c_size * h / r_size) / 2 + n
            side = c_size * h / r_size
        else:
            top, left = (h - c_size * w / r_size) / 2 + n, (r_size - c_size) / 2 * w / r_size
            side = c_size * w / r_size
        box = (int(left), int(top), int(left) + int(side), int(top) + int(side))
        out = im.crop(box).resize((c_size, c_size), _PIL_FILTERS[pp.interpolation])
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize(("device", "dtype"), INPUTS, ids=[f"{d}-{t}" for d, t in INPUTS])
@pytest.mark.parametrize("pp", [SUP, CLIP], ids=["256-224-bilinear", "224-224-bicubic"])
def test_views_match_a_plain_pil_implementation(pp: Preprocessing, device: str, dtype: str) -> None:
    for label, im in _photos().items():
        img = pil_to_tensor(im).to(device)
        img = img.float() if dtype == "float" else img
        mean = torch.tensor(pp.mean, device=device).view(3, 1, 1)
        std = torch.tensor(pp.std, device=device).view(3, 1, 1)
        for name in DEFAULT_VIEWS:
            ours = parse_view(name).transform(img, pp)
            assert ours.device.type == device and ours.dtype == torch.float32
            levels = ((ours * std + mean) * 255).permute(1, 2, 0).cpu().double().numpy()
            ref = pil_view(name, im, pp)
            assert levels.shape == ref.shape, (label, name)
            diff = np.abs(levels - ref)
            assert diff.max() <= PIL_MAX_LEVELS + 1e-3, (label, name, diff.max())
            assert diff.mean() <= PIL_MEAN_LEVELS, (label, name, diff.mean())


# ---------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def tiny_convnext() -> LoadedModel:
    return load_model("timm:test_convnext", LoadOptions(weights=WeightsSource("random")))


def test_timm_vit_runs_at_other_sizes_as_timm_resamples(tiny_timm: LoadedModel) -> None:
    vit = tiny_timm.module
    assert tiny_timm.preprocessing.crop_size == 160
    torch.manual_seed(0)
    for size in (112, 224):
        x = torch.randn(2, 3, size, size)
        # oracle: timm's own model at that size, weights adapted by timm's checkpoint filter
        fixed = timm.create_model("test_vit", img_size=size)
        fixed.load_state_dict(
            timm.models.vision_transformer.checkpoint_filter_fn(vit.net.state_dict(), fixed)
        )
        with torch.no_grad():
            torch.testing.assert_close(vit(x), fixed.eval()(x), rtol=1e-4, atol=1e-5)
    plain = timm.create_model("test_vit").eval()
    plain.load_state_dict(vit.net.state_dict())
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(vit(x), plain(x))  # unchanged at the native size


def test_timm_convnext_runs_at_other_sizes(tiny_convnext: LoadedModel) -> None:
    with torch.no_grad():
        for size in (112, 224):
            out = tiny_convnext.module(torch.randn(2, 3, size, size))
            assert out.shape == (2, 1000) and torch.isfinite(out).all()


def test_open_clip_vit_runs_at_other_sizes_as_force_image_size(tiny_clip: LoadedModel) -> None:
    register_bundled_configs()
    zs = tiny_clip.module
    native = zs.clip.visual.image_size
    torch.manual_seed(0)
    for size in (32, 112):
        # oracle: open_clip built at that size, weights resized by open_clip's resize_pos_embed
        other = open_clip.create_model("test-tiny-clip", pretrained=None, force_image_size=size)
        sd = zs.clip.state_dict()
        resize_pos_embed(sd, other)
        other.load_state_dict(sd)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            feats = torch.nn.functional.normalize(other.eval().encode_image(x).float(), dim=-1)
            torch.testing.assert_close(
                zs(x), zs.logit_scale * feats @ zs.text_head, rtol=1e-4, atol=1e-4
            )
    assert zs.clip.visual.image_size == native  # the tower itself is not changed


class _FixedSize(Classifier):
    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 160:
            raise AssertionError(f"Input width ({x.shape[-1]}) doesn't match model (160).")
        return torch.zeros(x.shape[0], 1000)

    def head(self, t: torch.Tensor) -> torch.Tensor:
        return t


def test_views_a_model_cannot_take_are_skipped_with_a_note(tiny_timm: LoadedModel) -> None:
    fixed = LoadedModel("fixed", tiny_timm.spec, _FixedSize(), tiny_timm.preprocessing, "random")
    views = [
        STANDARD,
        parse_view("scale:2"),
        parse_view("resolution:112"),
        parse_view("resolution:160"),
    ]
    notes: list[str] = []
    kept = runnable_views(fixed, views, RunSettings(), notes.append)
    assert [v.name for v in kept] == ["standard", "scale:2", "resolution:160"]
    assert len(notes) == 1 and "fixed cannot run at 112x112" in notes[0]
    assert runnable_views(tiny_timm, views, RunSettings(), notes.append) == views


# ---------------------------------------------------------------------------- scoring


def _vp(ids: list[str], pred: list[int]) -> ImageRecords:
    n = len(ids)
    z = np.zeros(n)
    p = np.array(pred)
    return ImageRecords(
        np.array(ids, dtype=object),
        np.zeros(n, np.int64),
        p,
        z,
        z,
        p == 0,
        np.zeros((n, 5), np.int64),
        np.zeros((n, 5)),
        z,
    )


def test_agreement_joins_views_by_sample_id() -> None:
    views = {
        "standard": _vp(["a", "b", "c", "d"], [1, 2, 3, 4]),
        "scale:2": _vp(["d", "c", "b", "a"], [4, 0, 2, 1]),  # other order: 3 of 4 agree
        "shift:5": _vp(["b", "e"], [9, 5]),  # 'e' has no standard prediction: ignored
    }
    rows = dict((v, r) for v, r in agreement(views, ScoringOptions(n_boot=50)))
    assert rows["standard"].value == 1.0 and rows["scale:2"].value == 0.75
    assert rows["shift:5"].value == 0.0
    assert rows["scale:2"].metric == "agreement"
    assert rows["scale:2"].ci_low <= 0.75 <= rows["scale:2"].ci_high
    assert agreement({"gaussian_noise:1": views["scale:2"]}, ScoringOptions()) == []


def test_heavy_evaluations_run_only_on_the_standard_view() -> None:
    spec = DATASETS.get("imagenet-val")
    assert "agreement" in spec.protocol.run_evaluations
    assert evaluations_for(spec, "standard") == spec.protocol.evaluations
    assert evaluations_for(spec, "scale:2") == ("accuracy",)
    assert evaluations_for(DATASETS.get("cue-conflict"), "scale:2") == ("shape_bias",)


# ---------------------------------------------------------------------------- CLI


def _views(*argv: str) -> tuple[str, ...]:
    return invariance_views(build_parser().parse_args(list(argv)))


def test_cli_grids_default_to_the_papers_and_can_be_changed() -> None:
    assert _views() == DEFAULT_VIEWS
    assert _views("--no-invariance") == ()
    assert _views("--scales", "1,1.0,2.50", "--shifts", "", "--resolutions", "64") == (
        "scale:1",
        "scale:2.5",
        "resolution:64",
    )
    assert _views("--shifts", "7") == (*DEFAULT_VIEWS[:5], "shift:7", *DEFAULT_VIEWS[10:])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--scales", "1,abc"], "scale needs a number"),
        (["--shifts", "2.5"], "shift needs an integer"),
        (["--resolutions", "0"], "1..4096"),
    ],
)
def test_cli_rejects_bad_grid_values(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert needle in capsys.readouterr().err
