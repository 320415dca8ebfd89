"""The `visionlens` command: parse, call a technique, render, write files atomically."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import ArgumentError, VisionlensError

try:  # typer >= 0.2x vendors click; older releases use click itself
    from typer import TyperException as _CliError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    from click import ClickException as _CliError  # type: ignore[assignment]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="See inside PyTorch vision models. Every command runs offline on the bundled "
    "ImageNet-pretrained EfficientNet-Lite0 unless --model says otherwise.",
)


class _Out:
    """stdout console, created at print time (so tests and pipes get a wide, plain one)."""

    def print(self, *args: object, **kwargs: object) -> None:
        Console(width=None if sys.stdout.isatty() else 160, highlight=False).print(*args, **kwargs)  # type: ignore[arg-type]


out = _Out()

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="efficientnet_lite0 or digits_cnn (bundled), torchvision:NAME, timm:NAME, FILE.pt or pkg.module:function",
    ),
]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="local state_dict for the model")]
TrustOpt = Annotated[
    bool, typer.Option("--trust-checkpoint", help="allow unpickling a whole model object (runs code from the file)")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="PNG to write")]
ArrayOpt = Annotated[bool, typer.Option("--save-array", help="also write the raw array as .npy beside the PNG")]
TargetOpt = Annotated[
    str | None, typer.Option("--target", "-t", help="class index or name (default: the predicted class)")
]
ImageArg = Annotated[str, typer.Argument(help="image file, or a bundled sample name such as chelsea")]


def _load(model: str, weights: Path | None, trust: bool, device: str | None):  # type: ignore[no-untyped-def]
    import torch

    from .loading import load_model

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(dev)
    except RuntimeError:
        raise ArgumentError(f"unknown device {dev!r}; use cpu or cuda[:N]") from None
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ArgumentError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return load_model(model, weights, trust, dev)


def _out_path(output: Path | None, image: str, what: str) -> Path:
    if output is not None:
        if output.suffix.lower() != ".png":
            raise ArgumentError(f"{output}: the output must be a .png file")
        return output
    return Path(f"{Path(image).stem}-{what}.png")


def _done(path: Path, array=None, save_array: bool = False) -> None:  # type: ignore[no-untyped-def]
    from .io import save_array as write_npy

    if save_array and array is not None:
        write_npy(path.with_suffix(".npy"), array)
        out.print(f"wrote {path} and {path.with_suffix('.npy')}")
    else:
        out.print(f"wrote {path}")


@app.command()
def layers(
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    fields: Annotated[bool, typer.Option(help="measure receptive fields (a few seconds)")] = True,
) -> None:
    """List every layer: dotted name, type, output shape and receptive field."""
    from .layers import layer_table

    m = _load(model, weights, trust_checkpoint, device)
    table = Table(title=f"{m.name}, input {m.preprocessing.input_size} px")
    for col in ("layer", "type", "output shape", "receptive field", "stride"):
        table.add_column(col)
    for info in layer_table(m, fields=fields):
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        rf = info.field
        size = "-" if rf is None else (f">={rf.size[0]}" if rf.clipped else f"{rf.size[0]}")
        table.add_row(info.name, info.type, shape, size, "-" if rf is None else str(rf.stride[0]))
    out.print(table)


@app.command()
def classify(
    images: Annotated[list[str], typer.Argument(help="image files or sample names")],
    top: Annotated[int, typer.Option("--top", "-k", min=1)] = 5,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Top-k predicted classes with probabilities."""
    from .inspection import classify as top_k

    m = _load(model, weights, trust_checkpoint, device)
    x = m.prepare(images)
    probs, idx = top_k(m, x, top)
    for name, p, i in zip(images, probs.tolist(), idx.tolist(), strict=False):
        out.print(f"[bold]{name}[/bold]")
        for pi, ii in zip(p, i, strict=False):
            out.print(f"  {pi:6.1%}  {ii:4d}  {m.label(ii)}")


@app.command()
def activations(
    image: ImageArg,
    layer: Annotated[str, typer.Option("--layer", "-l", help="dotted module name (see `visionlens layers`)")],
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="show the N most active channels")] = 16,
    channels: Annotated[str | None, typer.Option(help="comma-separated channel indices instead")] = None,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    output: OutOpt = None,
    save_array: ArrayOpt = False,
) -> None:
    """A layer's feature maps as a grid, beside the input."""
    from . import render
    from .inspection import activations as acts_of
    from .inspection import strongest_channels

    m = _load(model, weights, trust_checkpoint, device)
    path = _out_path(output, image, f"activations-{layer}")
    x = m.prepare(image)
    a = acts_of(m, x, layer)
    if a.dim() != 4:
        raise ArgumentError(
            f"layer {layer!r} has no spatial output (shape {tuple(a.shape[1:])}); pick a convolutional layer"
        )
    if channels:
        try:
            chans = [int(c) for c in channels.split(",") if c.strip()]
        except ValueError:
            raise ArgumentError(f"--channels must be comma-separated integers, got {channels!r}") from None
        bad = [c for c in chans if not 0 <= c < a.shape[1]]
        if bad:
            raise ArgumentError(f"channel {bad[0]} out of range: layer {layer!r} has {a.shape[1]} channels")
    else:
        chans = strongest_channels(a, top).tolist()
    tiles = render.feature_tiles(a[0], chans)
    panels = [render.Panel(render.hwc(m.to_image(x)[0]), "input")]
    panels.append(
        render.Panel(
            render.grid([render.upscale(t, 96) for t in tiles]),
            f"{layer}: channels {', '.join(map(str, chans[:8]))}{'...' if len(chans) > 8 else ''}",
        )
    )
    render.save_figure(
        path, panels, f"{m.name} activations of {layer} ({a.shape[1]}x{a.shape[2]}x{a.shape[3]})", panel_size=4.5
    )
    _done(path, a[0], save_array)


@app.command()
def filters(
    layer: Annotated[str | None, typer.Option("--layer", "-l", help="a Conv2d layer (default: the first)")] = None,
    limit: Annotated[int, typer.Option("--max", min=1, help="at most this many filters")] = 64,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    output: OutOpt = None,
    save_array: ArrayOpt = False,
) -> None:
    """A convolution's weights as a grid of filters."""
    from . import render
    from .inspection import filters as weights_of
    from .layers import first_conv

    m = _load(model, weights, trust_checkpoint, device)
    layer = layer or first_conv(m.net)
    path = _out_path(output, "filters", layer)
    w = weights_of(m, layer)
    tiles = render.filter_tiles(w[:limit])
    kind = "RGB" if w.shape[1] == 3 else "mean over inputs, blue<0<red"
    render.save_figure(
        path,
        [
            render.Panel(
                render.grid(tiles),
                f"{min(limit, w.shape[0])} of {w.shape[0]} filters, {w.shape[2]}x{w.shape[3]} ({kind})",
            )
        ],
        f"{m.name} {layer}",
        panel_size=6,
    )
    _done(path, w, save_array)


class SaliencyMethod(str, Enum):
    gradient = "gradient"
    smoothgrad = "smoothgrad"
    guided = "guided"
    gradcam = "gradcam"
    guided_gradcam = "guided-gradcam"


@app.command()
def saliency(
    image: ImageArg,
    method: Annotated[SaliencyMethod, typer.Option("--method")] = SaliencyMethod.gradient,
    target: TargetOpt = None,
    layer: Annotated[
        str | None, typer.Option("--layer", "-l", help="Grad-CAM layer (default: last spatial layer)")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="SmoothGrad noisy samples")] = 25,
    noise: Annotated[float, typer.Option(min=0.0, help="SmoothGrad noise, fraction of the input range")] = 0.15,
    softmax: Annotated[bool, typer.Option("--softmax", help="explain the probability instead of the logit")] = False,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    output: OutOpt = None,
    save_array: ArrayOpt = False,
) -> None:
    """Where the network looks: gradient, SmoothGrad, guided backprop, Grad-CAM, guided Grad-CAM."""
    from . import attribution as A
    from . import render
    from .inspection import classify as top_k
    from .layers import last_spatial_layer

    m = _load(model, weights, trust_checkpoint, device)
    path = _out_path(output, image, f"saliency-{method.value}")
    x = m.prepare(image)
    if method is SaliencyMethod.gradcam and layer is None:
        layer = last_spatial_layer(m, x.shape[-1])
    tgt = m.class_index(target) if target is not None else int(top_k(m, x, 1)[1][0, 0])
    img = render.hwc(m.to_image(x)[0])
    if method is SaliencyMethod.gradient:
        res = A.saliency(m, x, tgt, softmax=softmax)
        pic = [
            render.Panel(render.colorize(res[0], "inferno"), "|gradient| (max over RGB)"),
            render.Panel(render.overlay(img, res[0], "inferno"), "overlay"),
        ]
    elif method is SaliencyMethod.smoothgrad:
        res = A.smoothgrad(m, x, tgt, samples=samples, noise=noise, softmax=softmax)
        pic = [
            render.Panel(render.colorize(res[0], "inferno"), f"SmoothGrad, {samples} samples, noise {noise}"),
            render.Panel(render.overlay(img, res[0], "inferno"), "overlay"),
        ]
    elif method is SaliencyMethod.guided:
        res = A.guided_backprop(m, x, tgt, softmax=softmax)
        pic = [render.Panel(render.signed_rgb(res[0]), "guided backprop")]
    elif method is SaliencyMethod.gradcam:
        res = A.gradcam(m, x, tgt, layer=layer, softmax=softmax)
        pic = [render.Panel(render.overlay(img, res[0], "jet", 0.6), f"Grad-CAM at {layer}")]
    else:
        res = A.guided_gradcam(m, x, tgt, layer=layer, softmax=softmax)
        pic = [render.Panel(render.signed_rgb(res[0]), "guided Grad-CAM")]
    render.save_figure(
        path, [render.Panel(img, "input"), *pic], f"{m.name}: {method.value} for class {tgt} '{m.short_label(tgt)}'"
    )
    _done(path, res[0], save_array)


class Baseline(str, Enum):
    zero = "zero"
    mean = "mean"
    blur = "blur"


@app.command()
def occlusion(
    image: ImageArg,
    window: Annotated[int, typer.Option(help="side of the occluding square, px")] = 16,
    stride: Annotated[int, typer.Option(help="step between windows, px")] = 8,
    baseline: Annotated[Baseline, typer.Option(help="what fills the window")] = Baseline.zero,
    target: TargetOpt = None,
    logits: Annotated[
        bool, typer.Option("--logits", help="measure the logit drop instead of the probability drop")
    ] = False,
    model: ModelOpt = "efficientnet_lite0",
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    device: DeviceOpt = None,
    output: OutOpt = None,
    save_array: ArrayOpt = False,
) -> None:
    """How much the target's probability drops when each window of the image is covered."""
    from . import attribution as A
    from . import render
    from .inspection import classify as top_k

    m = _load(model, weights, trust_checkpoint, device)
    path = _out_path(output, image, "occlusion")
    x = m.prepare(image)
    tgt = m.class_index(target) if target is not None else int(top_k(m, x, 1)[1][0, 0])
    res = A.occlusion(m, x, tgt, window=window, stride=stride, baseline=baseline.value, softmax=not logits)
    img = render.hwc(m.to_image(x)[0])
    what = "logit" if logits else "probability"
    heat = res[0].clamp(min=0)
    render.save_figure(
        path,
        [
            render.Panel(img, "input"),
            render.Panel(render.colorize(heat, "inferno"), f"{what} drop (max {float(res[0].max()):.3f})"),
            render.Panel(render.overlay(img, heat, "jet", 0.6), f"window {window}, stride {stride}, {baseline.value}"),
        ],
        f"{m.name}: occlusion for class {tgt} '{m.short_label(tgt)}'",
    )
    _done(path, res[0], save_array)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    from . import cli_dataset, cli_report, cli_synthesis  # noqa: F401 - register their commands on `app`

    err = Console(stderr=True)
    cmd = typer.main.get_command(app)
    try:
        cmd.main(args=argv, prog_name="visionlens", standalone_mode=False)
    except VisionlensError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except _CliError as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(0)


if __name__ == "__main__":
    main()
