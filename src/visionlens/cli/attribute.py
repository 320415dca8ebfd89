"""Commands that explain one prediction: saliency (gradient, SmoothGrad, guided backprop,
Grad-CAM, guided Grad-CAM) and occlusion."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .app import app
from .options import ImageArg, ModelSpec, Output, SaveArray, grouped, output_path, stem, wrote
from .parsing import target_class

PANEL = "Attribute"
TargetOpt = Annotated[
    str | None, typer.Option("--target", "-t", help="class index or name (default: the predicted class)")
]


class SaliencyMethod(str, Enum):
    """The gradient-based maps `saliency --method` draws."""

    gradient = "gradient"
    smoothgrad = "smoothgrad"
    guided = "guided"
    gradcam = "gradcam"
    guided_gradcam = "guided-gradcam"
    rollout = "rollout"


class Baseline(str, Enum):
    """What fills the occluding window."""

    zero = "zero"
    mean = "mean"
    blur = "blur"


@app.command(rich_help_panel=PANEL)
@grouped
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
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Where the network looks: gradient, SmoothGrad, guided backprop, Grad-CAM, guided Grad-CAM,
    attention rollout (vision transformers)."""
    from .. import attribution as A
    from .. import render
    from ..layers import last_spatial_layer

    path = output_path(output, f"{stem(image)}-saliency-{method.value}.png")
    m = spec.load()
    x = m.prepare(image)
    if method is SaliencyMethod.gradcam and layer is None:
        layer = last_spatial_layer(m, x.shape[-1])
    tgt = target_class(m, x, target)
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
    elif method is SaliencyMethod.rollout:  # class-independent: how patches flow into the class token
        res = A.attention_rollout(m, x)
        pic = [render.Panel(render.overlay(img, res[0], "jet", 0.6), "attention rollout")]
    else:
        res = A.guided_gradcam(m, x, tgt, layer=layer, softmax=softmax)
        pic = [render.Panel(render.signed_rgb(res[0]), "guided Grad-CAM")]
    render.save_figure(
        path, [render.Panel(img, "input"), *pic], f"{m.name}: {method.value} for class {tgt} '{m.short_label(tgt)}'"
    )
    wrote(path, res[0], save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def occlusion(
    image: ImageArg,
    window: Annotated[int, typer.Option(help="side of the occluding square, px")] = 16,
    stride: Annotated[int, typer.Option(help="step between windows, px")] = 8,
    baseline: Annotated[Baseline, typer.Option(help="what fills the window")] = Baseline.zero,
    target: TargetOpt = None,
    logits: Annotated[
        bool, typer.Option("--logits", help="measure the logit drop instead of the probability drop")
    ] = False,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """How much the target's probability drops when each window of the image is covered."""
    from .. import attribution as A
    from .. import render

    path = output_path(output, f"{stem(image)}-occlusion.png")
    m = spec.load()
    x = m.prepare(image)
    tgt = target_class(m, x, target)
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
    wrote(path, res[0], save_array)
