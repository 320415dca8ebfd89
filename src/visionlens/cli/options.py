"""What the commands share: option groups (the model a command runs on, declared once in
`ModelSpec`), the output and --save-array options, and the "wrote X" report.

An option group is a frozen dataclass whose fields are Typer options. A command takes it as one
parameter (`spec: ModelSpec`); `@grouped` shows the fields as options on the command line and
passes them back to the command as one dataclass."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ArgumentError

if TYPE_CHECKING:
    from ..models import Model

Command = Callable[..., None]


class _Out:
    """The stdout console, made at print time (so that tests and pipes get a wide, plain one)."""

    def print(self, *objects: Any, **options: Any) -> None:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160, highlight=False).print(*objects, **options)


out = _Out()


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network a command runs on, as its options name it; `load()` it once."""

    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="efficientnet_lite0, digits_cnn, digits_vit or digits_canvas_cnn (bundled), torchvision:NAME, "
            "timm:NAME, FILE.pt / .ts (TorchScript) / .pt2 (torch.export), or pkg.module:function",
        ),
    ] = "efficientnet_lite0"
    weights: Annotated[Path | None, typer.Option("--weights", help="local state_dict for the model")] = None
    trust_checkpoint: Annotated[
        bool,
        typer.Option("--trust-checkpoint", help="allow unpickling Python objects from a model file (runs its code)"),
    ] = False
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    ] = None

    def load(self) -> Model:
        """The network with its preprocessing and labels, on the asked device."""
        import torch

        from ..loading import load_model

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.device(device)
        except RuntimeError:
            raise ArgumentError(f"unknown device {device!r}; use cpu or cuda[:N]") from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ArgumentError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
        index = torch.device(device).index
        if device.startswith("cuda") and index is not None and index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ArgumentError(f"--device {device}: this machine has {n} CUDA device(s), cuda:0-cuda:{n - 1}")
        return load_model(self.model, self.weights, self.trust_checkpoint, device)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """What an attribution explains, as its options name it: a class, a contrast, a score, a
    region of a segmentation output, or the similarity to a reference image."""

    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="class index or name (default: the predicted class)"),
    ] = None
    versus: Annotated[
        str | None,
        typer.Option("--versus", help="contrast: explain --target's logit minus this class's (why A rather than B)"),
    ] = None
    score: Annotated[
        str,
        typer.Option("--score", help="logit, softmax (probability) or sigmoid (multi-label models)"),
    ] = "logit"
    mask: Annotated[
        Path | None,
        typer.Option("--mask", help="segmentation models: explain the class over this mask image (white = in)"),
    ] = None
    similar_to: Annotated[
        str | None,
        typer.Option("--similar-to", help="embedding models: explain the cosine similarity to this image"),
    ] = None

    def resolve(self, model: Model, x: Any) -> Any:
        """The target object for `model` (see `visionlens.attribution.targets`)."""
        from ..attribution import targets as T

        if self.score not in T.SCORES:
            raise ArgumentError(f"`score` must be one of {', '.join(T.SCORES)}, not {self.score!r}")
        if self.similar_to is not None:
            if self.target is not None or self.versus is not None:
                raise ArgumentError("--similar-to explains a similarity, not a class: drop --target and --versus")
            return T.Similarity(model.prepare(self.similar_to))
        if self.versus is not None:
            return T.Contrast(self.target, self.versus)
        if self.mask is not None:  # cropped and resized exactly as the image was
            mask = model.to_image(model.prepare(str(self.mask)))[0].mean(0)
            if mask.shape != x.shape[-2:]:
                raise ArgumentError(f"{self.mask}: the mask must have the image's aspect ratio")
            return T.Region(self.target, mask > 0.5)
        return T.Class(self.target, self.score)  # type: ignore[arg-type]


def _group_parameters(group: type) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(group, include_extras=True)
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(group)
    ]


def grouped(command: Command) -> Command:
    """Show each option-group parameter of `command` (one annotated with a dataclass such as
    ModelSpec) as its fields' options, in its place; build the dataclass back when it runs."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for p in signature.parameters.values():
        if isinstance(p.annotation, type) and dataclasses.is_dataclass(p.annotation):
            groups[p.name] = p.annotation
            params += _group_parameters(p.annotation)
        else:  # keyword-only, so that options and groups may come in any order
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise TypeError(f"{command.__name__}: an option group repeats a parameter name: {names}")

    @functools.wraps(command)
    def run(**options: Any) -> None:
        for name, group in groups.items():
            options[name] = group(**{f.name: options.pop(f.name) for f in dataclasses.fields(group)})
        command(**options)

    # what Typer reads (inspect.signature honours __signature__, a plain function attribute)
    run.__dict__["__signature__"] = signature.replace(parameters=params)
    return run


ImageArg = Annotated[str, typer.Argument(help="image file, or a bundled sample name such as chelsea")]


def _write_arrays(path: Path, array: Any) -> Path:
    import numpy as np

    from ..io import save_array, write_atomic

    if not isinstance(array, Mapping):
        return save_array(path.with_suffix(".npy"), array)
    # Any, or mypy matches **arrays to savez's allow_pickle
    arrays: dict[str, Any] = {name: np.asarray(a) for name, a in array.items()}
    return write_atomic(path.with_suffix(".npz"), lambda f: np.savez(f, **arrays))


Output = Annotated[Path | None, typer.Option("--output", "-o", help="PNG to write")]
SaveArray = Annotated[bool, typer.Option("--save-array", help="also write the raw array as .npy beside the PNG")]


def stem(source: str) -> str:
    """What an input gives to default output names: `photos/cat.jpg` -> `cat`, `data/` -> `data`."""
    return Path(source.rstrip("/")).stem or source


def output_path(output: Path | None, default: str, suffixes: tuple[str, ...] = (".png",)) -> Path:
    """The file to write: `output`, or `default` in the current folder; its suffix must be one
    of `suffixes`."""
    path = output if output is not None else Path(default)
    if path.suffix.lower() not in suffixes:
        raise ArgumentError(f"{path}: the output must be a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise ArgumentError(f"{path}: is a directory; give an output file name")
    return path


def model_and_layer(
    spec: ModelSpec, layer: str | None, purpose: str, output: Path | None, default_name: Callable[[str], str]
) -> tuple[Model, str, Path]:
    """(the model, loaded once; `layer`, or the one its structure suggests for `purpose`; the
    file to write, `default_name(layer)` unless -o names one). A bad -o fails before the
    model loads."""
    from ..layers import default_layer

    output_path(output, "x.png")
    m = spec.load()
    layer = layer or default_layer(m, purpose)
    return m, layer, output_path(output, default_name(layer))


def wrote(path: Path, array: Any = None, save_array: bool = False, note: str = "") -> None:
    """Say that `path` was written; with `save_array`, first write `array` beside it
    (atomically, like every file): one array as .npy, a mapping of names to arrays as .npz."""
    written = [path]
    if save_array and array is not None:
        written.append(_write_arrays(path, array))
    out.print(f"wrote {' and '.join(map(str, written))}" + (f"  ({note})" if note else ""))
