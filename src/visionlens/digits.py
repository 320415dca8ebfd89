"""`digits_cnn`: a small CNN for sklearn's 8x8 handwritten digits, bundled so that every dataset
view has a meaningful offline default (`--model digits_cnn --dataset digits`).

The weights (data/digits_cnn.pt, ~0.4 MB) are made by `scripts/train_digits_cnn.py`, which trains
on `digits_split()`'s training part; its held-out part is what the accuracy is measured on.
"""

from __future__ import annotations

from collections import OrderedDict
from importlib import resources

import numpy as np
import torch
from torch import nn

from .models import Model, Preprocessing

# Mean and spread of the digits' pixels (0..16 scaled to 0..1), replicated over RGB.
DIGITS_PREPROCESSING = Preprocessing(input_size=8, resize=8, mean=(0.3,) * 3, std=(0.38,) * 3, interpolation="bilinear")
DIGIT_LABELS = [str(i) for i in range(10)]


def digits_cnn_net() -> nn.Module:
    """conv-bn-relu x2, max-pool to 4x4, conv-bn-relu, global average pool, linear."""

    def block(cin: int, cout: int, i: int) -> list[tuple[str, nn.Module]]:
        return [
            (f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(cout)),
            (f"relu{i}", nn.ReLU(inplace=True)),
        ]

    features = nn.Sequential(
        OrderedDict([*block(3, 32, 1), *block(32, 64, 2), ("pool", nn.MaxPool2d(2)), *block(64, 128, 3)])
    )
    head = nn.Sequential(
        OrderedDict(
            [
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("drop", nn.Dropout(0.2)),
                ("fc", nn.Linear(128, 10)),
            ]
        )
    )
    return nn.Sequential(OrderedDict([("features", features), ("head", head)]))


def load_bundled_weights(net: nn.Module, filename: str) -> nn.Module:
    """Load the state dict `filename` shipped in visionlens/data into `net` (weights only)."""
    ref = resources.files("visionlens") / "data" / filename
    with resources.as_file(ref) as path:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


def load_digits_cnn(weights: bool = True) -> Model:
    """The bundled digits CNN as a `Model` (8-px input, labels "0".."9"); `weights=False`
    leaves it untrained (for training it)."""
    net = digits_cnn_net()
    if weights:
        load_bundled_weights(net, "digits_cnn.pt")
    return Model(net.eval(), DIGITS_PREPROCESSING, list(DIGIT_LABELS), "digits_cnn")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 digits as uint8 (N, 8, 8) images in 0..255 and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64)


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) of a stratified 75/25 split of the digits."""
    from sklearn.model_selection import train_test_split

    _, labels = digits_arrays()
    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=0.25, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def digits_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 8, 8) digits to the network's normalized (N, 3, 8, 8) input."""
    x = torch.from_numpy(images).float().div(255.0)[:, None].expand(-1, 3, -1, -1)
    return DIGITS_PREPROCESSING.normalize(x).contiguous()


def accuracy(model: Model, indices: np.ndarray) -> float:
    """The fraction of the digits at `indices` that `model` classifies correctly, in [0, 1]."""
    images, labels = digits_arrays()
    with torch.inference_mode():
        pred = model.net.eval()(digits_tensor(images[indices]).to(model.device)).argmax(1).cpu().numpy()
    return float((pred == labels[indices]).mean())
