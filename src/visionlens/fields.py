"""Receptive fields measured on the network itself: which input pixels each output position
of a layer can see."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .probe import Probe


@dataclass(frozen=True)
class ReceptiveField:
    """Output position j of a layer sees input pixels [j*stride - offset, j*stride - offset + size)
    along each axis (rows, then columns)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    clipped: bool = False  # the field reached the input border: size is a lower bound

    def span(self, j: int, axis: int) -> tuple[int, int]:
        """Input pixels [lo, hi) seen by output position `j` along `axis` (0: rows, 1:
        columns); may reach past the input's border."""
        lo = j * self.stride[axis] - self.offset[axis]
        return lo, lo + self.size[axis]

    def size_text(self) -> str:
        """The field's side for a table: `43`, or `>=219` when it reached the input border."""
        return f">={self.size[0]}" if self.clipped else str(self.size[0])


def _positive_copy(net: nn.Module) -> nn.Module:
    """A float copy whose every path carries a positive signal, so that an output's input
    gradient is non-zero exactly on its receptive field: weights become positive, about
    1/fan-in, biases 0, batch norms the identity, max pooling average pooling. The weights
    differ from channel to channel (seeded): were every channel equal, a LayerNorm over
    channels would output zeros and pass no gradient (ConvNeXt, the transformers). On the
    CPU, whatever device `net` is on: a field is the set of pixels whose gradient is exactly
    non-zero, and a GPU's fast convolutions (Winograd, FFT) can leave rounding residue where
    it is zero."""
    pos = copy.deepcopy(net).cpu().float().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # tensors made inside inference mode (a folded copy's biases) cannot be written or
        # differentiated outside it: give every parameter and buffer ordinary storage
        for t in [*pos.parameters(), *pos.buffers()]:
            if t.is_inference():
                t.data = t.data.clone()
        for name, p in pos.named_parameters():
            if p.dim() >= 2:  # (out, in, ...): an outer product of positive factors per channel
                rest = [1] * (p.dim() - 2)
                u = 0.5 + torch.rand(p.shape[0], generator=gen).view(-1, 1, *rest)
                v = 0.5 + torch.rand(p.shape[1], generator=gen).view(1, -1, *rest)
                p.copy_((u * v / max(1, p[0].numel())).expand_as(p))
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
        for name, b in pos.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)
    for parent in pos.modules():
        for cname, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(
                    parent,
                    cname,
                    nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode),
                )
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                setattr(parent, cname, nn.AdaptiveAvgPool2d(child.output_size))
    for p in pos.parameters():
        p.requires_grad_(False)
    return pos


def receptive_fields(
    net: nn.Module, input_size: int | tuple[int, int], layers: Sequence[str]
) -> dict[str, ReceptiveField]:
    """Receptive field of each named layer with a spatial (N, C, H, W) output, measured by
    backpropagating from one output position of a positive copy of the network.

    Args:
        net: the network (not modified: a float copy is measured).
        input_size: the input's side, or its (H, W), in px.
        layers: dotted layer names.

    Returns:
        {layer: ReceptiveField} for the layers with a spatial output of at least 2 x 2; the
        others (and every layer of a network the copy cannot run) are left out.

    Example:
        >>> fields = vl.receptive_fields(vl.load_model().net, 224, ["blocks.1", "blocks.3"])
        >>> fields["blocks.1"].size, fields["blocks.1"].stride, fields["blocks.3"].size
        ((19, 19), (4, 4), (147, 147))
    """
    return {name: f for name, f in each_receptive_field(net, input_size, layers) if f is not None}


def each_receptive_field(
    net: nn.Module, input_size: int | tuple[int, int], layers: Sequence[str]
) -> Iterator[tuple[str, ReceptiveField | None]]:
    """`receptive_fields` one layer at a time, in the order of `layers` (forward order), each
    measured only when asked for: a caller that stops early does not pay for the rest. None
    for a layer with no field (see `receptive_fields`).

    A field that does not reach the border is the same at any input size that is a
    multiple of 32, as the input is (the same padding and exact strides up to 32), and a
    backward pass costs the input's area: such inputs are measured at 64 px first, then 128,
    and only the layers whose field does not fit there at the full size."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    sizes = [(_smaller(h, t), _smaller(w, t)) for t in (64, 128)] if h % 32 == w % 32 == 0 else []
    sizes = [sz for i, sz in enumerate(sizes) if sz[0] < h and sz[1] < w and sz not in sizes[:i]] + [(h, w)]
    with torch.inference_mode(False):
        try:
            pos = _positive_copy(net)
        except Exception:  # noqa: BLE001 - a network that cannot be copied (torch.export modules) has no fields
            return
    todo = list(layers)
    for size in sizes:
        full = size == (h, w)
        for name, field in _each_field(pos, size, todo):
            if not full and (field is None or field.clipped):
                break  # does not fit at this size (or cannot be told): measure from here larger
            yield name, field
            todo = todo[1:]
        else:
            if full or not todo:
                return


def _smaller(n: int, target: int) -> int:
    """`n` less a multiple of 32, as small as it goes while >= `target` (`n` if below it)."""
    return n - 32 * max(0, (n - target) // 32)


# modules that act on each position alone (and 1x1 convolutions of stride 1, see
# `_pointwise`): their output's field is their input's
_POINTWISE = (
    nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid,
    nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d,
)  # fmt: skip


def _pointwise(m: nn.Module | None) -> bool:
    if isinstance(m, nn.Conv2d):
        return m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding in ((0, 0), "valid", "same")
    return isinstance(m, _POINTWISE)


def _each_field(
    pos: nn.Module, size: tuple[int, int], layers: Sequence[str]
) -> Iterator[tuple[str, ReceptiveField | None]]:
    """Fields of `layers` on the positive copy at one input size; nothing if it cannot run.
    One backward pass per distinct field: a layer whose output is an earlier layer's tensor
    (a block and its last child), or that acts on each position alone on such a tensor (a
    norm, an activation), takes that layer's field."""
    h, w = size
    modules = dict(pos.named_modules())
    inputs: dict[str, torch.Tensor] = {}  # held, so that no two of the tensors share an id

    def keep(m: nn.Module, args: Any, name: str) -> None:
        if args and isinstance(args[0], torch.Tensor):
            inputs[name] = args[0]

    hooks = [modules[n].register_forward_pre_hook(partial(keep, name=n)) for n in layers if _pointwise(modules.get(n))]
    # outside inference mode, even when called inside it: the copy is differentiated
    with torch.inference_mode(False):
        # small inputs keep residual sums far from saturating activations such as ReLU6
        x = torch.full((1, 3, h, w), 1e-3, dtype=torch.float32, requires_grad=True)  # the copy is on the CPU
        try:
            with Probe(pos, layers) as probe, torch.enable_grad():
                try:
                    pos(x)
                except Exception:  # noqa: BLE001 - a model the copy cannot run simply has no fields
                    return
                outs = dict(probe.outputs)
        finally:
            for hk in hooks:
                hk.remove()
    known: dict[int, ReceptiveField | None] = {}  # id of a measured output -> its field
    # no context is held across a yield: the caller runs in its own grad and inference modes
    for name in layers:
        o, i = outs.get(name), inputs.get(name)
        if isinstance(o, torch.Tensor) and id(o) in known:
            field = known[id(o)]
        elif i is not None and id(i) in known and isinstance(o, torch.Tensor) and o.shape == i.shape:
            field = known[id(i)]
        else:
            field = _field(o, x, h, w)
        if isinstance(o, torch.Tensor):
            known[id(o)] = field
        yield name, field


def _field(o: Any, x: torch.Tensor, h: int, w: int) -> ReceptiveField | None:
    """The field of output `o`'s centre position: the input pixels its gradient reaches."""
    if not isinstance(o, torch.Tensor) or o.dim() != 4 or not o.requires_grad:
        return None
    oh, ow = o.shape[-2:]
    if oh < 2 or ow < 2:
        return None
    y0, x0 = oh // 2, ow // 2
    # channels weighted unequally: a sum over a LayerNorm's channels is constant
    seed = torch.linspace(0.5, 1.5, o.shape[1], dtype=o.dtype, device=o.device)
    with torch.inference_mode(False), torch.enable_grad():
        (g,) = torch.autograd.grad((o[0, :, y0, x0] * seed).sum(), x, retain_graph=True)
    nz = g[0].abs().sum(0) > 0
    rows = torch.nonzero(nz.any(1)).flatten()
    cols = torch.nonzero(nz.any(0)).flatten()
    if rows.numel() == 0:
        return None
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    sy, sx = max(1, round(h / oh)), max(1, round(w / ow))
    return ReceptiveField(
        size=(r1 - r0 + 1, c1 - c0 + 1),
        stride=(sy, sx),
        offset=(y0 * sy - r0, x0 * sx - c0),
        clipped=r0 == 0 or c0 == 0 or r1 == h - 1 or c1 == w - 1,
    )
