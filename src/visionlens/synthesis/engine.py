"""The synthesis engine: ONE optimization loop behind every technique that makes an image.

    parameterization -> random transforms -> model (as far as the objective needs) -> objective -> step

Gradient-ascent feature visualization, DeepDream, inversion, texture synthesis and style
transfer are short recipes that choose a parameterization, an objective and an optimizer.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError
from ..layermaps import MapLayout, to_maps
from ..layers import dry_run, fit_input, layer_layouts
from ..models import Model, as_model
from ..probe import Probe, backward_rule
from ..progress import Progress
from ..tracing import forward_until
from .objectives import Objective, State
from .param import make_param
from .transforms import RandomTransforms, Transform


@dataclass
class Result:
    """What `synthesize` (and every recipe built on it) returns.

    Attributes:
        images: the pictures, (B, 3, H, W) RGB in [0, 1] on the model's device.
        values: the objective's value after each step.
        steps: the steps completed.
        interrupted: True when Ctrl-C stopped the run; `images` are the last completed step.
        failure: why the run stopped early (e.g. the objective became NaN), or None; `images`
            are then the last good step.
        params: what made the images: the objective's description and the engine's settings
            (shown beside the images by `vl.show` and in notebooks).

    Example:
        >>> from visionlens.synthesis.objectives import channel
        >>> r = vl.synthesize(vl.load_model(), channel("blocks.4", 7), size=64, steps=8)
        >>> r.images.shape, r.steps, len(r.values), r.failure
        (torch.Size([1, 3, 64, 64]), 8, 8, None)
    """

    images: torch.Tensor
    values: list[float] = field(default_factory=list)
    steps: int = 0
    interrupted: bool = False
    failure: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


class NormalizedAscent(torch.optim.Optimizer):
    """Plain gradient steps scaled by the gradient's mean magnitude (DeepDream's update)."""

    def __init__(self, params: list[nn.Parameter], lr: float = 0.01) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]  # torch splits step into None/closure overloads; one signature, as LBFGS has
        """One step: p -= lr * grad / mean(|grad|) for every parameter; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad / (p.grad.abs().mean() + 1e-8), alpha=-group["lr"])
        return loss


def _optimizer(kind: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=50, line_search_fn="strong_wolfe")
    if kind == "normalized":
        return NormalizedAscent(params, lr=lr)
    raise ArgumentError(f"unknown optimizer {kind!r}; choose adam, lbfgs or normalized")


def _tiles(h: int, w: int, tile: int | None) -> list[tuple[slice, slice]]:
    if not tile or (h <= tile and w <= tile):
        return [(slice(None), slice(None))]
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    ys = [round(i * h / ny) for i in range(ny + 1)]
    xs = [round(j * w / nx) for j in range(nx + 1)]
    return [(slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(ny) for j in range(nx)]


def synthesize(
    model: Model | nn.Module,
    objective: Objective,
    *,
    batch: int = 1,
    size: int | tuple[int, int] = 128,
    init: torch.Tensor | None = None,
    param: str = "fourier",
    steps: int = 256,
    lr: float = 0.05,
    optimizer: str = "adam",
    transforms: Transform | str | None = "standard",
    redirect_steps: int | None = None,
    tile: int | None = None,
    seed: int | None = 0,
    progress: bool = False,
    save_every: int | None = None,
    on_frame: Callable[[int, torch.Tensor], None] | None = None,
) -> Result:
    """Optimize an image (batch) to maximize `objective` on `model`: the one loop behind
    every recipe. The images that objectives see (`State.image`) are pictures in [0, 1]; the
    model gets them normalized.

    Args:
        model: a `Model` or any `nn.Module`.
        objective: what to maximize (see `visionlens.synthesis.objectives`).
        batch: images optimized together (without `init`).
        size: the side, or (H, W), of the images in px (without `init`).
        init: (B, 3, H, W) model input to start from, as `model.prepare(...)` makes it; else
            the images start from small noise.
        param: "fourier" (decorrelated 1/f spectrum), "pixel" (sigmoid pixels) or "raw"
            (pixels clamped to [0, 1]; usually with `init`).
        steps: optimization steps.
        lr: the optimizer's learning rate.
        optimizer: "adam", "lbfgs" or "normalized" (DeepDream's scaled gradient step).
        transforms: "standard" (pad, jitter, scale, rotate), a callable on (B, 3, H, W)
            pictures, or None.
        redirect_steps: for this many first steps ReLUs pass gradient to dead units (default:
            an eighth of the steps, at most 32, from noise; 0 with `init`).
        tile: evaluate the objective on tiles of at most this many px (large images).
        seed: seed of the starting noise and the transforms (None: not seeded).
        progress: show a progress bar.
        save_every: with `on_frame`, call it every this many steps.
        on_frame: called as on_frame(step, images) with the current pictures in [0, 1].

    Returns:
        A `Result`: (B, 3, H, W) pictures in [0, 1] and the objective after every step. A NaN
        objective or Ctrl-C ends the run early, keeping the last good images.

    Example:
        >>> from visionlens.synthesis.objectives import channel, total_variation
        >>> model = vl.load_model()
        >>> r = vl.synthesize(model, channel("blocks.4", 7) - 1e-3 * total_variation(), size=64, steps=8)
        >>> r.images.shape, r.steps
        (torch.Size([1, 3, 64, 64]), 8)
    """
    model = as_model(model)
    net, dev = model.net, model.device
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if init is not None:
        init = model.to_image(init.detach().to(dev, torch.float32))
        n, c, h, w = init.shape
        shape = (n, c, h, w)
    else:
        h, w = (size, size) if isinstance(size, int) else size
        shape = (batch, 3, h, w)
    img_param = make_param(param, shape, init, gen).to(dev)
    opt = _optimizer(optimizer, list(img_param.parameters()), lr)
    tf: Transform | None
    if isinstance(transforms, str):
        if transforms != "standard":
            raise ArgumentError(f"unknown transforms {transforms!r}; give 'standard', a callable or None")
        tf = RandomTransforms(generator=gen)
    else:
        tf = transforms
    if redirect_steps is None:
        redirect_steps = 0 if init is not None else min(32, steps // 8)
    layers = list(objective.layers)
    stop = None
    layouts: dict[str, MapLayout] = {}
    if layers:  # one dry run: how the objective's layers are laid out, and where it may stop
        tr = dry_run(model)
        layouts = {n: lay for n, lay in layer_layouts(model, trace=tr).items() if n in layers}
        if not objective.needs_output:  # run the network only as far as the objective looks
            stop = max(layers, key=lambda n: tr.end.get(n, 0))
    pre = model.preprocessing
    values: list[float] = []
    result = Result(img_param().detach().clone())
    result.params = {
        "objective": objective.description,
        "size": f"{shape[-2]}x{shape[-1]}",
        "steps": steps,
        "param": param,
        "optimizer": optimizer,
        "lr": lr,
        "seed": seed,
    }
    last_good = copy.deepcopy(img_param.state_dict())

    def closure(step: int) -> float:
        opt.zero_grad()
        img = img_param()
        seen = tf(img) if tf is not None else img
        total = torch.zeros((), device=dev)
        cuts = _tiles(seen.shape[-2], seen.shape[-1], tile)
        with Probe(net, layers) as probe, backward_rule("redirect" if step < redirect_steps else None):
            for k, (ys, xs) in enumerate(cuts):
                part = seen[..., ys, xs]
                x = fit_input(model, pre.normalize(part))  # a fixed-size model sees its own size
                out = forward_until(net, x, stop) if stop else net(x)
                acts = to_maps(layouts, {n: probe[n] for n in layers}, (x.shape[-2], x.shape[-1]))
                state = State(img if len(cuts) == 1 else part, acts, None if stop else out)
                value = objective(state)
                (-value).backward(retain_graph=k < len(cuts) - 1)
                total = total + value.detach()
        return -float(total)

    constrain = getattr(img_param, "constrain", None)  # e.g. RawImage clamps to [0, 1] after each step
    bar = Progress(objective.description[:60], steps, enabled=progress, transient=True)
    # Gradients reaching dead units are often denormal floats, which run 20x slower on CPUs.
    flushing = torch.set_flush_denormal(True)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for step in range(steps):
                loss = opt.step(functools.partial(closure, step))
                value = -float(loss) if loss is not None else float("nan")
                if constrain is not None:
                    constrain()
                finite = math.isfinite(value) and all(torch.isfinite(p).all() for p in img_param.parameters())
                if not finite:
                    img_param.load_state_dict(last_good)
                    result.failure = f"the objective became {value} at step {step + 1}; kept the image of step {step}"
                    break
                last_good = copy.deepcopy(img_param.state_dict())
                values.append(value)
                result.steps = step + 1
                bar.advance(1, note=f"{value:.4g}")
                if on_frame is not None and save_every and (step + 1) % save_every == 0:
                    with torch.no_grad():
                        on_frame(step + 1, img_param().detach())
    except KeyboardInterrupt:
        img_param.load_state_dict(last_good)
        result.interrupted = True
    finally:
        if flushing:
            torch.set_flush_denormal(False)
        bar.close()
    with torch.no_grad():
        result.images = img_param().detach()
    result.values = values
    return result
