"""Dataset discovery in the conventional layouts, decoding and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beyond_inet.datasets import DATASETS, DatasetLayoutError, discover
from beyond_inet.datasets.decode import DecodedImages, load_rgb
from beyond_inet.reference import imagenet_val_labels, imagenet_wnids
from tests.conftest import noise_image, write_corrupt_files, write_cue_conflict, write_flat_val


def test_flat_val_is_labelled_from_the_imagenet_x_table(tmp_path: Path) -> None:
    names = write_flat_val(tmp_path / "val", 5)
    found = discover(DATASETS.get("imagenet-val"), tmp_path / "val")
    assert found is not None
    assert [s.sample_id for s in found.samples] == names
    labels = imagenet_val_labels()
    assert [s.label for s in found.samples] == [labels[n] for n in names]


def test_class_folder_val_uses_wnid_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764"
    for idx in (0, 417, 999):
        d = tmp_path / "val" / wnids[idx]
        d.mkdir(parents=True)
        noise_image(rng, 64, 80).save(d / "ILSVRC2012_val_00000010.JPEG")
    (tmp_path / "val" / wnids[5]).mkdir()  # empty class folder is fine
    found = discover(DATASETS.get("imagenet-val"), tmp_path / "val")
    assert found is not None
    assert [s.label for s in found.samples] == [0, 417, 999]
    assert found.samples[1].sample_id == f"{wnids[417]}/ILSVRC2012_val_00000010.JPEG"


def test_missing_folder_is_none_and_empty_folder_is_an_error(tmp_path: Path) -> None:
    spec = DATASETS.get("imagenet-val")
    assert discover(spec, tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="Expected layout: imagenet/val/<wnid>"):
        discover(spec, tmp_path / "empty")
    (tmp_path / "bad" / "n99999999").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="not ImageNet-1k wnids"):
        discover(spec, tmp_path / "bad")


def test_cue_conflict_layout_and_malformed_names(tmp_path: Path) -> None:
    ids = write_cue_conflict(tmp_path / "cc", [("cat", "dog"), ("knife", "oven")])
    found = discover(DATASETS.get("cue-conflict"), tmp_path / "cc")
    assert found is not None and sorted(s.sample_id for s in found.samples) == sorted(ids)
    assert all(s.label == -1 for s in found.samples)
    noise_image(np.random.default_rng(0), 8, 8).save(tmp_path / "cc" / "cat" / "holiday.png")
    with pytest.raises(ValueError, match="holiday"):
        discover(DATASETS.get("cue-conflict"), tmp_path / "cc")


def test_limit_is_a_seeded_class_balanced_sample(tmp_path: Path) -> None:
    from beyond_inet.datasets.base import balanced_sample

    ids = write_cue_conflict(
        tmp_path / "cc", [(shape, "dog") for shape in ("cat", "car", "oven") for _ in range(5)]
    )
    found = discover(DATASETS.get("cue-conflict"), tmp_path / "cc", limit=7)
    assert found is not None and len(found.samples) == 7
    shapes = [s.sample_id.split("/")[0] for s in found.samples]
    assert sorted(shapes.count(c) for c in ("cat", "car", "oven")) == [2, 2, 3]  # balanced
    # the same sample again, and whatever order the files are listed in
    again = discover(DATASETS.get("cue-conflict"), tmp_path / "cc", limit=7)
    assert again is not None and again.samples == found.samples
    full = discover(DATASETS.get("cue-conflict"), tmp_path / "cc")
    assert full is not None and len(full.samples) == len(ids)
    shuffled = list(reversed(full.samples))
    assert {s.sample_id for s in balanced_sample(shuffled, 7)} == {
        s.sample_id for s in found.samples
    }
    # not the first files: the seeded order, not the folder order
    assert [s.sample_id for s in found.samples] != sorted(ids)[:7]
    assert balanced_sample(full.samples, 100) == full.samples


def test_corrupt_files_decode_to_errors_not_exceptions(tmp_path: Path) -> None:
    write_flat_val(tmp_path / "val", 2)
    bad = write_corrupt_files(tmp_path / "val")
    found = discover(DATASETS.get("imagenet-val"), tmp_path / "val")
    assert found is not None
    items = [DecodedImages(found.samples)[i] for i in range(len(found.samples))]
    errors = {found.samples[d.index].sample_id: d.error for d in items if d.image is None}
    assert set(errors) == set(bad)
    assert all(
        d.image is not None and d.image.dtype.is_floating_point is False
        for d in items
        if d.error is None
    )


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_load_rgb_converts_every_mode(tmp_path: Path, mode: str) -> None:
    base = noise_image(np.random.default_rng(0), 20, 30)
    if mode == "I;16":
        arr = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(arr)
        assert im.mode.startswith("I;16")
    else:
        im = base.convert(mode)
    path = tmp_path / f"x.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    im.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (30, 20)
    if mode == "I;16":  # 16-bit scaled to 8-bit, not clipped to white
        np.testing.assert_allclose(np.asarray(rgb)[..., 0], np.asarray(base.convert("L")), atol=1)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = noise_image(np.random.default_rng(0), 20, 40)  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display -> portrait
    im.save(tmp_path / "o.jpg", exif=exif)
    assert load_rgb(tmp_path / "o.jpg").size == (20, 40)
