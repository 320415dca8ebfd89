"""A network together with its preprocessing and class labels.

A `Model` is the `nn.Module` plus everything needed to turn images into input tensors and
back (`loading.load_model(spec)` makes one). Every technique accepts either a `Model` or a
bare `nn.Module` (which gets ImageNet preprocessing and numbered labels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .errors import ArgumentError, TargetError, closest
from .images import image_tensor, load_image
from .layermaps import MapLayout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class Preprocessing:
    """How images become input tensors: short side resized to `resize`, centre crop of
    `input_size`, scaled to [0, 1], then normalized with `mean` and `std`.

    Attributes:
        input_size: side of the square crop the network sees, in px.
        resize: the short side before cropping, in px.
        mean: per-channel mean subtracted from RGB in [0, 1].
        std: per-channel standard deviation divided by.
        interpolation: a torchvision `InterpolationMode` value ("bicubic", "bilinear", ...).

    Example:
        >>> pre = vl.Preprocessing(input_size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)
        >>> pre(vl.load_image("chelsea")).shape
        torch.Size([3, 224, 224])
    """

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """A PIL image to one normalized (3, input_size, input_size) input tensor."""
        return self.normalize(TF.to_tensor(self.crop(img)))

    def crop(self, img: Image.Image) -> Image.Image:
        """The part of `img` the network sees, at its input size (resized, centre-cropped)."""
        mode = InterpolationMode(self.interpolation)
        img = TF.resize(img, self.resize, interpolation=mode, antialias=True)
        return TF.center_crop(img, [self.input_size, self.input_size])

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], (3, H, W) or (B, 3, H, W), to model input: (x - mean) / std."""
        mean = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(-1, 1, 1)
        return (x01 - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input back to displayable [0, 1] RGB."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x * std + mean).clamp(0, 1)


@dataclass
class Model:
    """A network with its preprocessing and labels. `net` is the plain `nn.Module`; layer
    names are its own dotted module names. `load_model` makes one; `as_model` wraps a bare
    module.

    Attributes:
        net: the network, returning logits (B, num_classes).
        preprocessing: how images become its input (`prepare` applies it).
        labels: class names by index (ImageNet's for 1000 classes); may be empty.
        name: the spec it was loaded from, shown in pictures and reports.
        layouts: layer name -> `MapLayout`, overriding what visionlens reads from the
            network's outputs (for an exotic model whose token grid cannot be inferred).
        default_layers: purpose ("style", "content", "dream", ...) -> layers the model's
            maker chose; purposes not named here are chosen from structure.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> model.short_label(int(model.logits(x).argmax()))
        'tiger cat'
    """

    net: nn.Module
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: list[str] = field(default_factory=list)
    name: str = "model"
    layouts: dict[str, MapLayout] = field(default_factory=dict)
    default_layers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """The device of the network's first parameter (CPU for a network without any)."""
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Model:
        """Move the network to `device` in place; returns the model itself."""
        self.net.to(device)
        return self

    @property
    def num_classes(self) -> int | None:
        """The number of class labels, or None when the model has none."""
        return len(self.labels) or None

    def prepare(self, images: Any, size: int | None = None, square: bool = False) -> torch.Tensor:
        """Images to the network's input: the one input convention of every visionlens
        function that takes images.

        Args:
            images: a path, a bundled sample name, a PIL image or an (H, W, 3) array, or a
                list of them; or a tensor that already is model input, (3, H, W) or
                (B, 3, H, W), which is only batched and moved.
            size: None: the model's own preprocessing (short side resized, centre crop of the
                input size). Else the short side resized to `size` px (bicubic) and no crop.
            square: with `size`, centre-crop to size x size.

        Returns:
            A normalized (B, 3, H, W) float batch on the model's device.

        Example:
            >>> model = vl.load_model()
            >>> model.prepare("chelsea").shape, model.prepare("chelsea", size=96).shape
            (torch.Size([1, 3, 224, 224]), torch.Size([1, 3, 96, 144]))
        """
        if isinstance(images, torch.Tensor):
            if size is not None:
                raise ArgumentError("`size` applies to images read from files; a tensor is taken as model input as is")
            x = images if images.dim() == 4 else images.unsqueeze(0)
            return x.to(self.device, torch.float32)
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        if size is None:
            tensors = [self.preprocessing(load_image(im)) for im in images]
            return torch.stack(tensors).to(self.device)
        pictures = [image_tensor(im, size, square=square) for im in images]
        shapes = {tuple(p.shape[-2:]) for p in pictures}
        if len(shapes) > 1:
            raise ArgumentError(
                f"images of different sizes {sorted(shapes)} do not form one batch; pass square=True or prepare them "
                "one at a time"
            )
        return self.to_input(torch.cat(pictures))

    def to_input(self, pictures: torch.Tensor) -> torch.Tensor:
        """RGB pictures in [0, 1], (3, H, W) or (B, 3, H, W), to the network's input
        (normalized, on the model's device): the inverse of `to_image`."""
        return self.preprocessing.normalize(pictures.to(self.device, torch.float32))

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input back to RGB pictures in [0, 1] for display: the inverse of
        `to_input`."""
        return self.preprocessing.denormalize(x)

    def label(self, index: int) -> str:
        """The full label of class `index` ("tiger cat"), or "class N" when it has none."""
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def short_label(self, index: int) -> str:
        """The label up to its first comma: "goldfish" for "goldfish, Carassius auratus"."""
        return self.label(index).split(",")[0]

    def class_index(self, target: int | str, num_classes: int | None = None) -> int:
        """A class given as index or name (any of its comma-separated synonyms), checked
        against `num_classes` (default: the number of labels)."""
        n = num_classes or self.num_classes
        if isinstance(target, str) and target.strip().lstrip("-").isdigit():
            target = int(target)
        if isinstance(target, int):
            if n is not None and not 0 <= target < n:
                raise TargetError(f"target class {target} is out of range: the model has {n} classes (0-{n - 1})")
            return target
        return _class_by_name(self.labels, target)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) logits of model input `x` (as `prepare` makes it), in eval mode
        and without gradients."""
        self.net.eval()
        with torch.inference_mode():
            return self.net(x.to(self.device))


def _class_by_name(labels: list[str], name: str) -> int:
    want = name.strip().lower().replace("_", " ")
    exact = [i for i, lab in enumerate(labels) if lab.lower() == want]
    if exact:
        return exact[0]
    syn = [i for i, lab in enumerate(labels) if want in (s.strip().lower() for s in lab.split(","))]
    if len(syn) == 1:
        return syn[0]
    if len(syn) > 1:
        opts = "; ".join(f"{i}: {labels[i]}" for i in syn)
        raise TargetError(f"class name {name!r} is ambiguous ({opts}); give the index instead")
    firsts = [lab.split(",")[0].lower() for lab in labels]
    close = closest(want, firsts)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise TargetError(f"unknown class name {name!r}{hint} (or give a class index)")


def as_model(model: Model | nn.Module) -> Model:
    """Wrap a bare module with ImageNet preprocessing; pass a `Model` through unchanged.
    Every function that takes a model calls this, so a plain `nn.Module` works everywhere.

    Args:
        model: a `Model`, or an `nn.Module` taking (B, 3, H, W) input and returning logits.

    Returns:
        The `Model` itself, or a new one with ImageNet mean/std, 224-px input, no labels and
        the module's class name as its name.

    Example:
        >>> import torchvision
        >>> model = vl.as_model(torchvision.models.resnet18())
        >>> model.name, model.preprocessing.input_size
        ('ResNet', 224)
    """
    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        return Model(net=model, name=type(model).__name__)
    raise TypeError(f"expected a visionlens Model or an nn.Module, got {type(model).__name__}")


@cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names by index, read once from the bundled list."""
    text = resources.files("visionlens").joinpath("data/imagenet_classes.txt").read_text()
    return text.splitlines()


def labels_for(num_classes: int | None) -> list[str]:
    """ImageNet's labels for 1000 classes, else 'class 0', 'class 1', ..."""
    if num_classes == 1000:
        return list(imagenet_labels())
    return [f"class {i}" for i in range(num_classes or 0)]


def num_classes_of(net: nn.Module) -> int | None:
    """The class count a network declares (`num_classes`), else its last Linear's outputs."""
    n = getattr(net, "num_classes", None)
    if isinstance(n, int):
        return n
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


def with_labels(model: Model, labels: Sequence[str]) -> Model:
    """A copy of `model` with other class labels (the network itself is shared)."""
    return replace(model, labels=list(labels))
