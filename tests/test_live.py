"""Live inference library: predictions, what the model saw, CLIP custom labels, sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from beyond_inet.live import (
    EXAMPLES,
    TEMPLATE_SETS,
    Playground,
    image_to_tensor,
    is_clip,
    label_head,
    parse_labels,
    perturb,
    predict,
    rank_labels,
    sweep,
    sweep_grid,
    unnormalize,
)
from beyond_inet.models import LoadedModel
from beyond_inet.models.contract import Classifier
from beyond_inet.reference import imagenet_class_names
from beyond_inet.registry import UnknownNameError
from beyond_inet.transforms.perturbations import CORRUPTIONS, corrupt, rotate
from beyond_inet.transforms.preprocess import center_crop, resize_shorter, standard_transform


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return image_to_tensor(EXAMPLES.get("chelsea (cat)")())


def test_examples_load_offline() -> None:
    assert len(EXAMPLES) >= 5
    for name in EXAMPLES:
        arr = EXAMPLES.get(name)()
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name


def test_image_to_tensor_converts_gray_arrays() -> None:
    t = image_to_tensor(np.full((5, 7), 9, np.uint8))
    assert t.shape == (3, 5, 7) and t.dtype == torch.uint8 and int(t.max()) == 9


def test_predict_top5_matches_the_model(
    tiny_timm: LoadedModel, tiny_clip: LoadedModel, photo: torch.Tensor
) -> None:
    results = predict([tiny_timm, tiny_clip], photo)
    names = imagenet_class_names()
    for m, r in zip([tiny_timm, tiny_clip], results, strict=True):
        assert r.error is None and r.model == m.name and r.random_weights
        with torch.inference_mode():
            logits = m.module(standard_transform(photo, m.preprocessing)[None])[0]
        p, i = torch.softmax(logits, -1).topk(5)
        assert [s.index for s in r.topk] == i.tolist()
        assert [s.prob for s in r.topk] == pytest.approx(p.tolist(), abs=1e-5)
        assert [s.name for s in r.topk] == [names[k] for k in i.tolist()]
        assert r.input_size == m.preprocessing.crop_size
    assert results[0].features is None and results[1].features is not None
    assert float(results[1].features.norm()) == pytest.approx(1.0, abs=1e-5)


def test_seen_image_is_the_resized_crop(tiny_timm: LoadedModel, photo: torch.Tensor) -> None:
    pp = tiny_timm.preprocessing
    (r,) = predict([tiny_timm], photo)
    expected = center_crop(resize_shorter(photo, pp.resize_size, pp), pp.crop_size)
    expected = expected.permute(1, 2, 0).numpy().astype(int)
    assert r.seen is not None and r.seen.dtype == np.uint8
    assert r.seen.shape == (pp.crop_size, pp.crop_size, 3)
    assert np.abs(r.seen.astype(int) - expected).max() <= 1
    assert np.array_equal(unnormalize(standard_transform(photo, pp), pp), r.seen)


def test_perturb_order_rotation_then_corruption(photo: torch.Tensor) -> None:
    s = Playground(rotation=30, corruption="contrast", severity=2)
    assert torch.equal(perturb(photo, s), corrupt(rotate(photo, 30), "contrast", 2))
    assert torch.equal(perturb(photo, Playground()), photo)


def test_a_failing_model_does_not_hide_the_others(
    tiny_timm: LoadedModel, photo: torch.Tensor
) -> None:
    class Broken(Classifier):
        def trunk(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("Input height (64) doesn't match model (160).")

    broken = LoadedModel("broken", tiny_timm.spec, Broken(), tiny_timm.preprocessing, "random")
    bad, good = predict([broken, tiny_timm], photo)
    assert bad.error and "doesn't match" in bad.error and not bad.topk
    assert good.error is None and len(good.topk) == 5


def test_parse_labels() -> None:
    assert parse_labels(" cat, Dog ,, cat,  tabby   cat ") == ["cat", "Dog", "tabby cat"]
    with pytest.raises(ValueError, match="at least two"):
        parse_labels("cat, CAT")


def test_custom_labels_match_a_direct_clip_computation(
    tiny_clip: LoadedModel, photo: torch.Tensor
) -> None:
    import open_clip

    labels = ["cat", "dog", "space rocket"]
    (r,) = predict([tiny_clip], photo)
    assert r.features is not None
    head = label_head(tiny_clip, labels, "single")
    ranked = rank_labels(tiny_clip, r.features, head, labels)
    clip = tiny_clip.module.clip  # type: ignore[union-attr]
    tok = open_clip.get_tokenizer(tiny_clip.spec.arch)
    with torch.no_grad():
        prompts = tok([f"a photo of a {c}." for c in labels])
        text = nn.functional.normalize(clip.encode_text(prompts), dim=-1)
        img = nn.functional.normalize(
            clip.encode_image(standard_transform(photo, tiny_clip.preprocessing)[None]), dim=-1
        )
    probs = torch.softmax(tiny_clip.settings["logit_scale"] * img[0] @ text.T, -1)
    assert {s.name: s.prob for s in ranked} == pytest.approx(
        dict(zip(labels, probs.tolist(), strict=True)), abs=1e-4
    )
    assert [s.prob for s in ranked] == sorted((s.prob for s in ranked), reverse=True)
    assert label_head(tiny_clip, labels, "openai-80").shape == head.shape
    assert len(TEMPLATE_SETS.get("openai-80")()) == 80


def test_custom_labels_need_clip(tiny_timm: LoadedModel) -> None:
    assert not is_clip(tiny_timm)
    with pytest.raises(ValueError, match="not a CLIP"):
        label_head(tiny_timm, ["a", "b"])


@pytest.mark.parametrize("param", ["rotation", "gaussian_noise"])
def test_sweep_starts_at_the_prediction(
    param: str, tiny_timm: LoadedModel, tiny_clip: LoadedModel, photo: torch.Tensor
) -> None:
    models = [tiny_timm, tiny_clip]
    clean = predict(models, photo)
    targets = {r.model: r.top1.index for r in clean if r.top1}
    df = sweep(models, photo, Playground(), param, targets)
    assert list(df.columns) == ["model", "label", "value", "confidence"]
    assert len(df) == 2 * len(sweep_grid(param))
    assert df["confidence"].between(0, 1).all()
    # the sweep's first grid point is the identity of the perturbation
    at0 = predict(models, photo, Playground().with_value(param, sweep_grid(param)[0]))
    for r in at0:
        row = df[(df["model"] == r.model) & (df["value"] == sweep_grid(param)[0])]
        probs = {s.index: s.prob for s in r.topk}
        if targets[r.model] in probs:
            assert float(row["confidence"].iloc[0]) == pytest.approx(
                probs[targets[r.model]], abs=1e-4
            )


def test_playground_values_and_errors() -> None:
    p = Playground()
    assert p.with_value("rotation", 45).rotation == 45
    assert p.with_value("contrast", 3) == Playground(corruption="contrast", severity=3)
    with pytest.raises(UnknownNameError, match="rotation"):
        p.with_value("rotatoin", 1)
    with pytest.raises(UnknownNameError):
        Playground(corruption="fog_of_war")
    with pytest.raises(ValueError, match="severity"):
        Playground(corruption=next(iter(CORRUPTIONS)), severity=9)


@pytest.mark.parametrize("view", ["scale:2", "shift:30", "resolution:112"])
def test_views_are_the_precompute_views(
    view: str, tiny_timm: LoadedModel, tiny_clip: LoadedModel, photo: torch.Tensor
) -> None:
    """The playground's view is beyond_inet.transforms.views' transform, run through the model."""
    from beyond_inet.transforms.views import parse_view

    v = parse_view(view)
    for m, r in zip(
        [tiny_timm, tiny_clip],
        predict([tiny_timm, tiny_clip], photo, Playground(view=view)),
        strict=True,
    ):
        assert r.error is None, r.error
        x = v.transform(photo, m.preprocessing)
        assert r.input_size == v.input_size(m.preprocessing) == x.shape[-1]
        assert np.array_equal(r.seen, unnormalize(x, m.preprocessing))
        with torch.inference_mode():
            top = torch.softmax(m.module(x[None])[0], -1).topk(5).indices.tolist()
        assert [s.index for s in r.topk] == top


def test_view_names_are_canonical() -> None:
    from beyond_inet.live import available_view_families, view_grid, view_name

    assert available_view_families() == ["scale", "shift", "resolution"]
    assert view_grid("scale")[0] == 1
    assert view_name("scale", 2.0) == "scale:2" and view_name("standard", 0) == "standard"
    assert view_name("shift", 30) == "shift:30"
