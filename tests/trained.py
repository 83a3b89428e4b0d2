"""A trained tiny classifier and the generated images it was trained for.

timm's ``test_vit`` (0.4 M parameters) trained for a few seconds on CPU to tell
:data:`N_CLASSES` generated picture classes apart (a hue plus a stripe pattern, with noise),
each class standing for one ImageNet-1k class. Its predictions are right most of the time
but not always, with moderate confidences: a realistic stand-in for pretrained weights in
tests and benchmarks (precision, calibration, statistics), unlike random weights.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

N_CLASSES = 10
#: The ImageNet-1k class each generated class stands for.
CLASS_INDICES: tuple[int, ...] = tuple(range(3, 1000, 100))[:N_CLASSES]
ARCH = "test_vit"


def class_image(
    c: int, rng: np.random.Generator, height: int = 160, width: int = 160
) -> np.ndarray:
    """An HWC uint8 picture of generated class ``c`` (0 <= c < N_CLASSES)."""
    hue = c / N_CLASSES + rng.normal(0, 0.035)
    base = np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.8, 0.9)) * 255
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = np.pi * (c % 5) / 5
    stripes = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) * (3 + c // 5 * 3))
    a = base[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    a = a + rng.normal(0, 25, (height, width, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def write_class_folders(root: Path, per_class: int, seed: int = 1) -> list[str]:
    """ImageNet-style ``<root>/<wnid>/img<k>.JPEG`` folders of the generated classes (varied
    sizes, as real photos); returns the sample ids."""
    from beyond_inet.reference import imagenet_wnids

    rng = np.random.default_rng(seed)
    ids = []
    for c, idx in enumerate(CLASS_INDICES):
        folder = root / imagenet_wnids()[idx]
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            h, w = (int(v) for v in rng.integers(170, 260, 2))
            name = f"{folder.name}_{k}.JPEG"
            Image.fromarray(class_image(c, rng, h, w)).save(folder / name, quality=95)
            ids.append(f"{folder.name}/{name}")
    return ids


def train_tiny_classifier(
    steps: int = 60, per_class: int = 40, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Train ``test_vit`` on generated class images; returns its state dict (load it with
    ``--checkpoint``: the model's own preprocessing and normalisation apply)."""
    import timm
    from timm.data import resolve_data_config

    torch.manual_seed(seed)
    model = timm.create_model(ARCH, num_classes=1000)
    cfg = resolve_data_config(model=model)
    size = int(cfg["input_size"][-1])
    rng = np.random.default_rng(seed)
    images = np.stack(
        [class_image(c, rng, size, size) for c in range(N_CLASSES) for _ in range(per_class)]
    )
    labels = torch.tensor([CLASS_INDICES[c] for c in range(N_CLASSES) for _ in range(per_class)])
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), labels[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_trained_checkpoint(path: Path, **kwargs: int) -> Path:
    """:func:`train_tiny_classifier` saved as safetensors at ``path``."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(train_tiny_classifier(**kwargs), str(path))
    return path
