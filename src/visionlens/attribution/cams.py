"""The CAM family: Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM (one engine over a
layer's activations and gradients, each method a combination rule), Score-CAM and Ablation-CAM
(from the scores of many modified copies, batched) and Eigen-CAM (from the activations alone).

Every method follows pytorch-grad-cam's definitions, so that before its min-max scaling a
map equals that library's `get_cam_image` (after its ReLU) on the same layer and target, and
shares one calling convention: `method(model, x, target=None, *, layer=None,
upsample=True, softmax=False, batch_size=32) -> (B, H, W)`, >= 0, not normalized. A layer is
chosen as `gradcam` chooses it, and any map layout (channels-first, channels-last, tokens)
becomes (B, C, h, w) through `map_layout`. `cam(model, x, target, method=...)` picks one by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError, did_you_mean
from ..layermaps import MapLayout
from ..layers import last_spatial_layer, map_layout
from ..models import Model, as_model
from ..probe import Probe, resolve_layer
from ._common import Target, batched_scores, check_positive, input_gradient
from ._fast import FastForward
from .targets import BoundTarget, bind, output_tensor

# (activations, gradients), both (B, C, h, w) -> (B, h, w) map before the ReLU
Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _resolve(model: Model, x: torch.Tensor, layer: str | None) -> tuple[str, MapLayout]:
    """The layer (default: the last spatial one) and its layout, from dry runs made in eval
    mode (in training mode they would update a network's BatchNorm statistics)."""
    with Probe(model.net):
        layer = layer or last_spatial_layer(model, x.shape[-1])
        return layer, map_layout(model, layer)


def _finish(cam: torch.Tensor, x: torch.Tensor, upsample: bool) -> torch.Tensor:
    """ReLU, then (optionally) bilinear resizing to the input's (H, W), as `gradcam` does."""
    cam = F.relu(cam)
    if upsample:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam


def _gradient_cam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target,
    layer: str | None,
    upsample: bool,
    softmax: bool,
    batch_size: int,
    combine: Combine,
) -> torch.Tensor:
    """A map from one layer's activations and score gradients, `batch_size` images a pass."""
    model = as_model(model)
    check_positive(batch_size=batch_size)
    x = x.to(model.device)
    layer, layout = _resolve(model, x, layer)
    hw = (x.shape[-2], x.shape[-1])
    cams = []
    with Probe(model.net):  # eval mode, restored after
        # one pass binds the target on its own output; more share a target bound on all images
        bound = None if x.shape[0] <= batch_size else bind(model, x, target, softmax)
        for start in range(0, x.shape[0], batch_size):
            rows = torch.arange(start, min(x.shape[0], start + batch_size))
            part = None if bound is None else bound.take(rows)
            _, _, cap = input_gradient(model, x[rows], target, softmax, layers=[layer], bound=part, need_input=False)
            act, grad = (layout.to_nchw(t, hw).float() for t in cap[layer])
            cams.append(combine(act, grad))
    return _finish(torch.cat(cams), x, upsample)


def _spatial_sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=(2, 3), keepdim=True)


def _gradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * act).sum(1)


def _gradcam_pp(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # Chattopadhyay et al. 2018, eq. 19, with exp(score) dropped as pytorch-grad-cam does
    g2 = grad.pow(2)
    g3 = g2 * grad
    alpha = g2 / (2 * g2 + _spatial_sum(act) * g3 + 1e-6)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    weights = _spatial_sum(grad.clamp(min=0) * alpha)
    return (weights * act).sum(1)


def _hirescam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (grad * act).sum(1)


def _xgradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    weights = _spatial_sum(grad * act / (_spatial_sum(act) + 1e-7))
    return (weights * act).sum(1)


def _layercam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (grad.clamp(min=0) * act).sum(1)


def gradcam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """Grad-CAM: ReLU(sum_c w_c A_c) with w_c the spatial mean of d score / d A_c at
    `layer` (default: the last spatial layer), bilinearly upsampled to the input size. It is
    one combination rule of the CAM family's shared engine, like the others below.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        layer: dotted name of a layer with a (C, h, w) output; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target's probability instead of its logit.
        batch_size: images per forward/backward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> vl.gradcam(model, x).shape, vl.gradcam(model, x, layer="blocks.5", upsample=False).shape
        (torch.Size([1, 224, 224]), torch.Size([1, 7, 7]))
    """
    return _gradient_cam(model, x, target, layer, upsample, softmax, batch_size, _gradcam)


def gradcam_pp(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018): ReLU(sum_c w_c A_c) with w_c the sum over
    positions of ReLU(dS/dA) weighted by a_ij = g^2 / (2 g^2 + sum(A_c) g^3), zero where g is.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain: a class index or name (one for all or one per image, None for
            top-1), or any target object or callable (see `visionlens.attribution.targets`).
        layer: dotted name of a layer whose output is a map (any layout); default: the last
            spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target class's probability instead of its logit.
        batch_size: images per forward/backward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.gradcam_pp(model, model.prepare("chelsea"), "tiger cat").shape
        torch.Size([1, 224, 224])
    """
    return _gradient_cam(model, x, target, layer, upsample, softmax, batch_size, _gradcam_pp)


def hirescam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """HiResCAM (Draelos and Carin 2020): ReLU(sum_c dS/dA_c * A_c), the gradient multiplied
    elementwise instead of averaged: on a layer followed only by pooling and a linear head it
    is exactly each position's contribution to the score.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target class's probability instead of its logit.
        batch_size: images per forward/backward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.hirescam(model, model.prepare("chelsea"), upsample=False).shape
        torch.Size([1, 7, 7])
    """
    return _gradient_cam(model, x, target, layer, upsample, softmax, batch_size, _hirescam)


def xgradcam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): ReLU(sum_c w_c A_c) with w_c = sum over positions of
    dS/dA_c * A_c / sum(A_c), the gradient weighted by the normalized activation.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target class's probability instead of its logit.
        batch_size: images per forward/backward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.xgradcam(model, model.prepare("chelsea"), "tiger cat").shape
        torch.Size([1, 224, 224])
    """
    return _gradient_cam(model, x, target, layer, upsample, softmax, batch_size, _xgradcam)


def layercam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): ReLU(sum_c ReLU(dS/dA_c) * A_c), positive gradients as
    per-position weights; it stays sharp on early layers, where Grad-CAM blurs.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: explain the target class's probability instead of its logit.
        batch_size: images per forward/backward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.layercam(model, model.prepare("chelsea"), layer="blocks.3").shape
        torch.Size([1, 224, 224])
    """
    return _gradient_cam(model, x, target, layer, upsample, softmax, batch_size, _layercam)


def _clean_pass(
    model: Model, x: torch.Tensor, target: Target, layer: str, softmax: bool
) -> tuple[torch.Tensor, torch.Tensor, BoundTarget]:
    """One inference pass: the layer's output in its own layout, the target's (B,) scores and
    the target bound on the output. Call inside inference mode."""
    with Probe(model.net, [layer]) as probe:
        out = model.net(x)
        native = probe[layer]
    bound = bind(model, x, target, softmax, output=out)
    return native, bound(out).float().cpu(), bound


def scorecam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020): ReLU(sum_c w_c A_c) with w = softmax over channels of the
    target's score on the image multiplied by each channel's map (bilinearly upsampled with
    aligned corners and min-max scaled to [0, 1], as pytorch-grad-cam does). The B x C masked
    copies run `batch_size` at a time without gradients; channels that are constant (dead)
    give the same all-zero mask, so each image's blank copy is scored once for all of them.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: score the target class's probability instead of its logit.
        batch_size: masked copies per forward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=96)
        >>> vl.attribution.cams.scorecam(model, x, "tiger cat", layer="blocks.5", batch_size=64).shape
        torch.Size([1, 96, 144])
    """
    model = as_model(model)
    check_positive(batch_size=batch_size)
    x = x.to(model.device)
    layer, layout = _resolve(model, x, layer)
    hw = (x.shape[-2], x.shape[-1])
    with torch.inference_mode():
        native, _, bound = _clean_pass(model, x, target, layer, softmax)
        act = layout.to_nchw(native, hw).float()
        b, c = act.shape[:2]
        flat = act.flatten(2)
        live = flat.amax(-1) > flat.amin(-1)  # a constant channel's mask is all zero
        # rows to score: every live (image, channel) pair, then one blank copy per image
        owners = torch.cat([live.nonzero()[:, 0].cpu(), torch.arange(b)])
        channels = torch.cat([live.nonzero()[:, 1].cpu(), torch.full((b,), -1)])

        def masked(rows: slice) -> torch.Tensor:
            own, ch = owners[rows].to(x.device), channels[rows].to(x.device)
            maps = act[own, ch.clamp(min=0)][:, None]
            up = F.interpolate(maps, size=hw, mode="bilinear", align_corners=True).flatten(1)
            lo, hi = up.amin(1, keepdim=True), up.amax(1, keepdim=True)
            mask = ((up - lo) / (hi - lo + 1e-8)) * (ch >= 0)[:, None]
            return x[own] * mask.view(-1, 1, *hw).to(x.dtype)

        run = FastForward.of(model.net, x[:1])
        scores = batched_scores(run, bound, owners, masked, batch_size).to(x.device)
        n = int(live.sum())
        table = scores[n:, None].expand(b, c).clone()  # the blank copy's score for dead channels
        table[live] = scores[:n]
        weights = table.softmax(-1)
        cam = (weights[:, :, None, None] * act).sum(1)
    return _finish(cam, x, upsample)


@contextmanager
def _output_replaced(net: nn.Module, layer: str, value: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Within this context every forward pass takes `value()` as the output of `layer` (the
    first element, when the layer returns a tuple) and runs the rest of the network on it."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (value(), *output[1:])
        return value()

    handle = resolve_layer(net, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _ablated(native: torch.Tensor, layout: MapLayout, channels: torch.Tensor) -> torch.Tensor:
    """Copies of one image's layer output `native` (1, ...), copy i with channel
    `channels[i]` set to zero everywhere (every position, every token)."""
    out = native.repeat(len(channels), *([1] * (native.ndim - 1)))
    dim = 1 if layout.kind == "channels_first" else native.ndim - 1
    out.movedim(dim, 1)[torch.arange(len(channels), device=out.device), channels.to(out.device)] = 0
    return out


def _ablation_scores(
    net: nn.Module,
    x: torch.Tensor,
    native: torch.Tensor,
    c: int,
    layout: MapLayout,
    layer: str,
    bound: BoundTarget,
    batch_size: int,
) -> torch.Tensor:
    """(B, C) target scores with each channel of `layer` ablated in turn.

    The ablated outputs of one image go in as a batch of copies; the network before `layer`
    runs on that image alone (batch 1) when the rest of the network broadcasts it against
    the copies (a residual stream read again after the layer does), which is checked on two
    channels against running every copy through the whole network; otherwise it does."""
    b = native.shape[0]
    forward = FastForward.of(net, x[:1], fold=False)  # no fold: the layer's own output is replaced
    whole = _ablation_pass(forward, x, native, layout, layer, bound, broadcast=False)
    probe = torch.tensor([0, c - 1])
    reference = whole(0, probe)
    try:
        fast = _ablation_pass(forward, x, native, layout, layer, bound, broadcast=True)
        same = torch.allclose(fast(0, probe), reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()))
    except (RuntimeError, AssertionError, ValueError):  # shapes that do not broadcast: run whole copies
        same = False
    run = fast if same else whole
    scores = torch.empty(b, c)
    for i in range(b):
        for start in range(0, c, batch_size):
            chans = torch.arange(start, min(c, start + batch_size))
            scores[i, chans] = run(i, chans)
    return scores


def _ablation_pass(
    forward: FastForward,
    x: torch.Tensor,
    native: torch.Tensor,
    layout: MapLayout,
    layer: str,
    bound: BoundTarget,
    broadcast: bool,
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A function (image i, channels) -> scores of image i with each of those channels ablated."""

    def run(i: int, chans: torch.Tensor) -> torch.Tensor:
        copies = _ablated(native[i : i + 1], layout, chans)
        inputs = x[i : i + 1] if broadcast else x[i : i + 1].expand(len(chans), *x.shape[1:])
        with _output_replaced(forward.net, layer, lambda: copies):
            out = forward(inputs)
        if output_tensor(out).shape[0] != len(chans):
            raise RuntimeError("the output has one row per input, not one per ablated copy")
        return bound.take([i] * len(chans))(out).float().cpu()

    return run


def ablationcam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """Ablation-CAM (Desai and Ramaswamy 2020): ReLU(sum_c w_c A_c) with
    w_c = (S - S_c) / S, S the target's score and S_c its score with channel c of the layer's
    output set to zero (at every position or token). The copies with one channel ablated
    each run on from the layer in batches of `batch_size`; the network before the layer runs
    once per batch on the one image when that is exact (checked), else on every copy.

    pytorch-grad-cam ablates to zero too when the layer's minimum is 0 (after a ReLU); on
    layers with negative values it writes a large negative number instead, which grows with
    the copy's position in its batch. Here the ablated value is always zero, as in the paper.
    A score of exactly 0 divides by 1 instead (the weights are then the score drops).

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: score the target class's probability instead of its logit.
        batch_size: ablated copies per forward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.ablationcam(model, model.prepare("chelsea"), "tiger cat").shape
        torch.Size([1, 224, 224])
    """
    model = as_model(model)
    check_positive(batch_size=batch_size)
    x = x.to(model.device)
    layer, layout = _resolve(model, x, layer)
    hw = (x.shape[-2], x.shape[-1])
    with torch.inference_mode():
        native, clean, bound = _clean_pass(model, x, target, layer, softmax)
        act = layout.to_nchw(native, hw).float()
        ablated = _ablation_scores(model.net, x, native, act.shape[1], layout, layer, bound, batch_size)
        denom = torch.where(clean == 0, torch.ones_like(clean), clean)[:, None]
        weights = ((clean[:, None] - ablated) / denom).to(act.device)
        cam = (weights[:, :, None, None] * act).sum(1)
    return _finish(cam, x, upsample)


def eigencam(
    model: Model | nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    layer: str | None = None,
    upsample: bool = True,
    softmax: bool = False,
    batch_size: int = 32,
) -> torch.Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): the layer's activations, centred over positions,
    projected on their first principal component; class-independent. A principal
    component's sign is arbitrary: it is the one LAPACK's SVD (numpy's, on the CPU) returns,
    as in pytorch-grad-cam, so that the maps agree with it.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: accepted for the common calling convention; Eigen-CAM does not depend on it.
        layer: dotted name of a map layer; default: the last spatial one.
        upsample: resize the map to the input's (H, W); False keeps the layer's (h, w).
        softmax: accepted for the common calling convention; unused.
        batch_size: images per forward pass.

    Returns:
        (B, H, W) (or (B, h, w)) map, >= 0, on the model's device; not normalized.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.eigencam(model, model.prepare("chelsea"), layer="blocks.5").shape
        torch.Size([1, 224, 224])
    """
    del target, softmax  # the first principal component is the same whatever is explained
    model = as_model(model)
    check_positive(batch_size=batch_size)
    x = x.to(model.device)
    layer, layout = _resolve(model, x, layer)
    hw = (x.shape[-2], x.shape[-1])
    maps = []
    with torch.inference_mode(), Probe(model.net, [layer]) as probe:
        for start in range(0, x.shape[0], batch_size):
            model.net(x[start : start + batch_size])
            act = layout.to_nchw(probe[layer], hw).float().cpu().numpy()
            maps += [_first_component(a) for a in act]
    cam = torch.from_numpy(np.stack(maps)).to(x.device)
    return _finish(cam, x, upsample)


def _first_component(act: np.ndarray) -> np.ndarray:
    """(C, h, w) activations -> (h, w) projection of the position-centred activations on
    their first right singular vector."""
    a = act.reshape(act.shape[0], -1).T
    a = np.where(np.isnan(a), np.float32(0), a)
    a = a - a.mean(axis=0)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    return (a @ vt[0]).reshape(act.shape[1:]).astype(np.float32)


CamMethod = Callable[..., torch.Tensor]

CAMS: dict[str, CamMethod] = {
    "gradcam": gradcam,
    "gradcam++": gradcam_pp,
    "hirescam": hirescam,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "scorecam": scorecam,
    "ablationcam": ablationcam,
    "eigencam": eigencam,
}
"""The CAM methods by name, each `method(model, x, target=None, *, layer=None, upsample=True,
softmax=False, ...) -> (B, H, W)`.

Example:
    >>> sorted(vl.attribution.cams.CAMS)[:3]
    ['ablationcam', 'eigencam', 'gradcam']
"""


def cam(
    model: Model | nn.Module, x: torch.Tensor, target: Target = None, method: str = "gradcam", **kw: Any
) -> torch.Tensor:
    """The class activation map of `method` (a key of `CAMS`), with the method's options.

    Args:
        model: a `Model` or any `nn.Module`.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: what to explain (class index or name, None for top-1, or any target object).
        method: "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam",
            "ablationcam" or "eigencam".
        **kw: the method's keyword options (`layer`, `upsample`, `softmax`, `batch_size`;
            `batch_size` is dropped for a method without one).

    Returns:
        (B, H, W) (or (B, h, w) with `upsample=False`) map, >= 0, on the model's device.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.cams.cam(model, model.prepare("chelsea"), method="layercam").shape
        torch.Size([1, 224, 224])
    """
    fn = CAMS.get(method)
    if fn is None:
        hint = did_you_mean(method, CAMS) or f"; choose from {', '.join(CAMS)}"
        raise ArgumentError(f"unknown `method` {method!r}{hint}")
    if "batch_size" in kw and "batch_size" not in inspect.signature(fn).parameters:
        kw = {k: v for k, v in kw.items() if k != "batch_size"}
    return fn(model, x, target, **kw)


__all__ = [
    "cam",
    "CAMS",
    "gradcam",
    "gradcam_pp",
    "hirescam",
    "xgradcam",
    "layercam",
    "scorecam",
    "ablationcam",
    "eigencam",
]
