"""The architecture matrix: real torchvision and timm architectures with random weights, built
at a small input size so that every technique runs on each of them in seconds.

Each factory is usable as a model spec (`--model tests.archs:vit_small`): it returns a
`Model` whose preprocessing feeds 64-px images (the transformers are created for 64 px, as a
user would create them for their own input size)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import timm
import torch
import torchvision
from torch import nn

from visionlens.models import Model, Preprocessing

SIZE = 64
_PRE = Preprocessing(input_size=SIZE, resize=72)


def _model(make: Callable[[], nn.Module], name: str) -> Model:
    torch.manual_seed(0)  # random but fixed weights
    net = make()
    for m in net.modules():  # BN statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
    return Model(net.eval(), _PRE, [f"class {i}" for i in range(10)], name)


# each built once per process: the commands of a test session share it
@cache
def resnet50() -> Model:
    return _model(lambda: torchvision.models.resnet50(num_classes=10), "resnet50")


@cache
def vgg16() -> Model:
    return _model(lambda: torchvision.models.vgg16(num_classes=10), "vgg16")


@cache
def densenet121() -> Model:
    return _model(lambda: torchvision.models.densenet121(num_classes=10), "densenet121")


@cache
def convnext_tiny() -> Model:
    return _model(lambda: timm.create_model("convnext_tiny", num_classes=10), "convnext_tiny")


@cache
def vit_small() -> Model:
    return _model(lambda: timm.create_model("vit_small_patch16_224", num_classes=10, img_size=SIZE), "vit_small")


@cache
def deit_tiny() -> Model:
    make = lambda: timm.create_model("deit_tiny_distilled_patch16_224", num_classes=10, img_size=SIZE)  # noqa: E731
    return _model(make, "deit_tiny_distilled")


@cache
def swin_tiny() -> Model:
    make = lambda: timm.create_model(  # noqa: E731
        "swin_tiny_patch4_window7_224", num_classes=10, img_size=SIZE, window_size=2
    )
    return _model(make, "swin_tiny")


MATRIX: dict[str, Callable[[], Model]] = {
    "resnet50": resnet50,
    "vgg16": vgg16,
    "densenet121": densenet121,
    "convnext_tiny": convnext_tiny,
    "vit_small": vit_small,
    "deit_tiny": deit_tiny,
    "swin_tiny": swin_tiny,
}


@cache
def lraspp() -> Model:
    """A segmentation model (its output is a dict whose "out" is (B, 5, H, W)): not in the
    classifier matrix, for the region targets."""
    make = lambda: torchvision.models.segmentation.lraspp_mobilenet_v3_large(  # noqa: E731
        weights=None, weights_backbone=None, num_classes=5
    )
    model = _model(make, "lraspp")
    model.labels = ["background", "a", "b", "c", "d"]
    return model
