"""ImageNet-C corruptions and rotation: shapes, determinism, severity order, hand-checked cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from beyond_inet.registry import UnknownNameError
from beyond_inet.transforms.perturbations import (
    CORRUPTIONS,
    PERTURBATIONS,
    SEVERITIES,
    SEVERITY_PARAMS,
    corrupt,
    corrupt_array,
    disk,
    imagenet_c_input,
    rotate,
)

#: The 15 corruptions of ImageNet-C (Hendrycks & Dietterich 2019), by their dataset names.
IMAGENET_C_15 = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A natural photo (scikit-image's chelsea, shipped offline) as uint8 CHW."""
    import skimage.data

    return torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).contiguous()


def _gray(value: int, h: int = 224, w: int = 224) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_names_and_parameters_are_imagenet_c() -> None:
    assert set(CORRUPTIONS) <= IMAGENET_C_15
    assert len(CORRUPTIONS) >= 8
    assert set(SEVERITY_PARAMS) == set(CORRUPTIONS)
    assert all(len(p) == 5 for p in SEVERITY_PARAMS.values())
    # spot checks against make_imagenet_c.py
    assert SEVERITY_PARAMS["gaussian_noise"][4] == 0.38
    assert SEVERITY_PARAMS["defocus_blur"][0] == (3, 0.1)
    assert SEVERITY_PARAMS["jpeg_compression"] == (25, 18, 15, 10, 7)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_dtype_and_determinism(name: str, photo: torch.Tensor) -> None:
    for s in SEVERITIES:
        out = corrupt(photo, name, s, seed=3)
        assert out.dtype == torch.uint8 and out.shape == (3, 224, 224)
        assert torch.equal(out, corrupt(photo, name, s, seed=3))
    clean = corrupt(photo, name, 0)
    assert torch.equal(clean, imagenet_c_input(photo))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_is_monotone(name: str, photo: torch.Tensor) -> None:
    """On a natural photo, each severity moves the image further from the clean crop."""
    clean = imagenet_c_input(photo).float()
    dist = [float((corrupt(photo, name, s).float() - clean).abs().mean()) for s in SEVERITIES]
    assert dist[0] > 0
    assert all(b >= a for a, b in itertools.pairwise(dist)), dist
    assert dist[-1] > 1.3 * dist[0], dist


def test_noise_seeds_differ(photo: torch.Tensor) -> None:
    for name in ("gaussian_noise", "shot_noise", "impulse_noise"):
        assert not torch.equal(corrupt(photo, name, 3, seed=0), corrupt(photo, name, 3, seed=1))


def test_gaussian_noise_std_matches_severity() -> None:
    out = corrupt_array(_gray(128), "gaussian_noise", 1).astype(float)
    # N(0, 0.08) on [0, 1] pixels -> std 0.08 * 255 = 20.4 (no clipping at mid-gray);
    # np.uint8 truncation lowers the mean by ~0.5.
    assert out.std() == pytest.approx(0.08 * 255, rel=0.03)
    assert out.mean() == pytest.approx(127.5, abs=0.5)


def test_shot_noise_is_poisson() -> None:
    x = 0.5
    out = corrupt_array(_gray(round(x * 255)), "shot_noise", 1).astype(float) / 255
    c = 60  # severity 1: poisson(x * 60) / 60 -> std sqrt(x / 60)
    assert out.std() == pytest.approx(np.sqrt(x / c), rel=0.05)


def test_impulse_noise_hits_the_requested_fraction() -> None:
    out = corrupt_array(_gray(128), "impulse_noise", 4)
    changed = np.mean((out == 0) | (out == 255))
    assert changed == pytest.approx(0.17, abs=0.01)
    assert np.mean(out == 0) == pytest.approx(np.mean(out == 255), abs=0.01)


def test_contrast_hand_checked() -> None:
    # two pixels, 0 and 200, mean 100; severity 1 keeps 40% of the deviation: 60 and 140.
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 1] = 200
    out = corrupt_array(img, "contrast", 1)
    assert out[0, :, 0].tolist() in ([60, 140], [59, 140], [60, 139], [59, 139])


def test_brightness_hand_checked() -> None:
    # gray 100: HSV value 100/255 + 0.1 -> 125.5 -> truncated to 125; gray stays gray.
    out = corrupt_array(_gray(100, 4, 4), "brightness", 1)
    assert np.all(out == 125)


def test_defocus_disk_and_constant_image() -> None:
    k = disk(3, 0.1)
    assert k.shape == (17, 17) and k.dtype == np.float32
    assert k.sum() == pytest.approx(1.0, abs=1e-3)
    assert disk(10, 0.5).shape == (21, 21)
    out = corrupt_array(_gray(90), "defocus_blur", 5)
    assert np.abs(out.astype(int) - 90).max() <= 1


def test_pixelate_makes_blocks() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = corrupt_array(img, "pixelate", 5)  # 224 -> 56 -> 224: 4 x 4 blocks
    blocks = out.reshape(56, 4, 56, 4, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])


def test_jpeg_compression_loses_detail() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    d1 = np.abs(corrupt_array(img, "jpeg_compression", 1).astype(int) - img).mean()
    d5 = np.abs(corrupt_array(img, "jpeg_compression", 5).astype(int) - img).mean()
    assert 0 < d1 < d5


def test_imagenet_c_input_is_resize_256_crop_224() -> None:
    img = torch.zeros(3, 300, 600, dtype=torch.uint8)
    img[:, :, 290:310] = 255  # a vertical bar in the middle survives the center crop
    out = imagenet_c_input(img)
    assert out.shape == (3, 224, 224)
    assert out[:, :, 112].min() == 255 and out[:, :, 0].max() == 0


def test_rotation_matches_exact_quarter_turns() -> None:
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert torch.equal(rotate(x, 0), x)
    assert torch.equal(rotate(x, 90), torch.rot90(x, 1, dims=(1, 2)))  # counter-clockwise
    assert torch.equal(rotate(x, 180), torch.flip(x, dims=(1, 2)))
    assert rotate(x, 30).shape == x.shape


def test_bad_input_fails_clearly() -> None:
    with pytest.raises(UnknownNameError, match="gaussian_noise"):
        corrupt_array(_gray(1, 8, 8), "gaussian_nois", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt_array(_gray(1, 8, 8), "contrast", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt_array(np.zeros((8, 8, 3)), "contrast", 1)
    with pytest.raises(ValueError, match="uint8 CHW"):
        rotate(torch.zeros(8, 8, 3), 10)


def test_perturbation_registry_grids() -> None:
    assert PERTURBATIONS.get("rotation").grid[0] == 0
    for name in CORRUPTIONS:
        assert PERTURBATIONS.get(name).grid == (0, 1, 2, 3, 4, 5)


def test_defocus_blur_matches_hendrycks_opencv_code() -> None:
    """Oracle: ``make_imagenet_c.py``'s ``disk`` / ``defocus_blur`` verbatim, with OpenCV
    (skipped where OpenCV is not installed; it is not a project dependency)."""
    cv2 = pytest.importorskip("cv2")

    def ref_disk(radius: int, alias_blur: float = 0.1, dtype: type = np.float32) -> np.ndarray:
        if radius <= 8:
            coords, ksize = np.arange(-8, 8 + 1), (3, 3)
        else:
            coords, ksize = np.arange(-radius, radius + 1), (5, 5)
        xx, yy = np.meshgrid(coords, coords)
        aliased_disk = np.array((xx**2 + yy**2) <= radius**2, dtype=dtype)
        aliased_disk /= np.sum(aliased_disk)
        return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)

    def ref_defocus_blur(x: np.ndarray, severity: int) -> np.ndarray:
        c = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
        x = np.array(x) / 255.0
        kernel = ref_disk(radius=c[0], alias_blur=c[1])
        channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
        return np.clip(np.array(channels).transpose((1, 2, 0)), 0, 1) * 255

    import skimage.data

    img = imagenet_c_input(torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1))
    arr = img.permute(1, 2, 0).numpy().copy()
    for s in SEVERITIES:
        c = SEVERITY_PARAMS["defocus_blur"][s - 1]
        assert np.allclose(disk(*c), ref_disk(*c), atol=1e-6)
        ours = corrupt_array(arr, "defocus_blur", s).astype(int)
        ref = np.uint8(ref_defocus_blur(arr, s)).astype(int)
        assert np.abs(ours - ref).max() <= 1 and np.mean(ours != ref) < 0.01, s


def test_deterministic_corruptions_match_hendrycks_code() -> None:
    """Oracle: ``make_imagenet_c.py``'s functions verbatim (PIL image in, as there) on a
    224 x 224 crop, then ``np.uint8`` as the dataset was saved."""
    import io

    import skimage as sk
    import skimage.data
    from PIL import Image as PILImage

    def ref_contrast(x: PILImage.Image, severity: int) -> np.ndarray:
        c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
        x = np.array(x) / 255.0
        means = np.mean(x, axis=(0, 1), keepdims=True)
        return np.clip((x - means) * c + means, 0, 1) * 255

    def ref_brightness(x: PILImage.Image, severity: int) -> np.ndarray:
        c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
        x = np.array(x) / 255.0
        x = sk.color.rgb2hsv(x)
        x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
        x = sk.color.hsv2rgb(x)
        return np.clip(x, 0, 1) * 255

    def ref_jpeg_compression(x: PILImage.Image, severity: int) -> PILImage.Image:
        c = [25, 18, 15, 10, 7][severity - 1]
        output = io.BytesIO()
        x.save(output, "JPEG", quality=c)
        return PILImage.open(output)

    def ref_pixelate(x: PILImage.Image, severity: int) -> PILImage.Image:
        c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
        x = x.resize((int(224 * c), int(224 * c)), PILImage.BOX)
        return x.resize((224, 224), PILImage.BOX)

    refs = {
        "contrast": ref_contrast,
        "brightness": ref_brightness,
        "jpeg_compression": ref_jpeg_compression,
        "pixelate": ref_pixelate,
    }
    crop = imagenet_c_input(torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1))
    arr = crop.permute(1, 2, 0).numpy().copy()
    for name, ref in refs.items():
        for s in SEVERITIES:
            expected = np.uint8(np.asarray(ref(PILImage.fromarray(arr), s)))
            assert np.array_equal(corrupt_array(arr, name, s), expected), (name, s)


def test_imagenet_c_input_matches_torchvision_pil_transforms(photo: torch.Tensor) -> None:
    """Oracle: Hendrycks' ``trn.Compose([trn.Resize(256), trn.CenterCrop(224)])`` on PIL."""
    import torchvision.transforms as trn
    import torchvision.transforms.functional as F

    pil = F.to_pil_image(photo)
    expected = F.pil_to_tensor(trn.Compose([trn.Resize(256), trn.CenterCrop(224)])(pil))
    assert torch.equal(imagenet_c_input(photo), expected)
