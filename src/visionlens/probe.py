"""The one way visionlens reaches inside a network.

`Probe` captures the outputs of named layers (and, through autograd, their gradients) and can
route every ReLU-family activation through the guided-backprop rule. It always restores the
model on exit: hooks removed, training flag, parameters' requires_grad and inplace flags.

Also here: resolving layer names, running a network up to (or on from) a layer, and measuring
receptive fields.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import LayerError


def layer_names(net: nn.Module) -> list[str]:
    return [n for n, _ in net.named_modules() if n]


def resolve_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule with this dotted name, or a LayerError naming the closest valid ones."""
    modules = dict(net.named_modules())
    if name in modules and name:
        return modules[name]
    names = layer_names(net)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        close = [n for n in names if n.startswith(name.split(".")[0])][:5] or names[:5]
    raise LayerError(f"no layer named {name!r}; closest: {', '.join(close)} (see `visionlens layers`)")


# ---------------------------------------------------------------- guided backprop


_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_}
_RELU6_FUNCS = {F.relu6}
_HARDTANH_FUNCS = {F.hardtanh, F.hardtanh_}


class _RedirectedClamp(torch.autograd.Function):
    """clamp(x, lo, hi) whose backward, for an image whose ordinary gradient through this
    activation is all zero, passes the gradient where it would move x back into the range
    (lucid's redirected ReLU). Used for the first steps of feature visualization so that
    units that start dead still get a signal instead of leaving a grey image."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lo: float, hi: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(min=lo, max=hi)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        inside = x > ctx.lo
        back_in = (x <= ctx.lo) & (grad < 0)  # descent would raise x into the range
        if ctx.hi is not None:
            inside &= x < ctx.hi
            back_in |= (x >= ctx.hi) & (grad > 0)
        normal = grad * inside
        dead = normal.flatten(1).abs().amax(1) == 0
        dead = dead.view(-1, *([1] * (grad.dim() - 1)))
        return torch.where(dead, grad * back_in, normal), None, None


def _clamp_args(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float | None] | None:
    """(lo, hi) when `func` is a ReLU-family activation, else None."""
    if func in _RELU_FUNCS:
        return 0.0, None
    if func in _RELU6_FUNCS:
        return 0.0, 6.0
    if func in _HARDTANH_FUNCS:
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        hi = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return float(lo), float(hi)
    return None


_OUT_OF_PLACE = {torch.relu_: torch.relu, torch.Tensor.relu_: torch.relu, F.relu_: torch.relu, F.hardtanh_: F.hardtanh}


def _positive_grad(g: torch.Tensor) -> torch.Tensor:
    return g.clamp(min=0)


class _ActivationMode(TorchFunctionMode):
    """Routes ReLU, ReLU6 and hardtanh through a custom backward rule whether they come from
    modules (nn.ReLU, nn.ReLU6, inplace or not) or from functional calls inside `forward`.

    The guided rule needs no custom function: the activation's own backward already zeroes
    the gradient outside its range, so a hook that keeps only the positive part of the
    incoming gradient on its output gives exactly guided backprop at native speed."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def,override]
        kwargs = kwargs or {}
        bounds = _clamp_args(func, args, kwargs)
        if bounds is None or not isinstance(args[0], torch.Tensor) or not args[0].requires_grad:
            return func(*args, **kwargs)
        if self.rule == "redirect":
            return _RedirectedClamp.apply(args[0], *bounds)
        kwargs.pop("inplace", None)
        if func in (F.relu, F.relu6, F.hardtanh):
            args = args[:1] + tuple(a for a in args[1:] if not isinstance(a, bool))
        out = _OUT_OF_PLACE.get(func, func)(*args, **kwargs)
        out.register_hook(_positive_grad)
        return out


BACKWARD_RULES = ("guided", "redirect")


@contextmanager
def backward_rule(name: str | None) -> Iterator[None]:
    """Within this context ReLU-family activations use the named backward rule
    ("guided" or "redirect"); None changes nothing."""
    if name is None:
        yield
        return
    if name not in BACKWARD_RULES:
        raise ValueError(f"unknown backward rule {name!r}")
    with _ActivationMode(name):
        yield


# ---------------------------------------------------------------- the probe


class Probe:
    """Context manager capturing the outputs of named layers during forward passes, and
    optionally routing every ReLU-family activation through another backward rule
    ("guided" backprop, or "redirect" for feature visualization).

        with Probe(net, ["blocks.3"], guided=False) as probe:
            logits = net(x)
            act = probe["blocks.3"]          # part of the autograd graph

    On entry the model is put in eval mode, parameters stop requiring gradients (only input
    gradients are needed), and inplace activations become out-of-place so captured tensors
    are not overwritten. With `reduce`, each output is replaced at once by `reduce(output)`
    (e.g. pooled statistics) and inplace activations stay as they are. Everything is
    restored on exit, also when an exception passes.
    """

    def __init__(
        self,
        net: nn.Module,
        layers: Sequence[str] = (),
        guided: bool = False,
        param_grads: bool = False,
        backward_rule: str | None = None,
        reduce: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.net = net
        self.reduce = reduce
        self.layers = list(layers)
        self.modules = {name: resolve_layer(net, name) for name in self.layers}
        self.rule = "guided" if guided else backward_rule
        if self.rule is not None and self.rule not in BACKWARD_RULES:
            raise ValueError(f"unknown backward rule {self.rule!r}")
        self.param_grads = param_grads
        self.outputs: dict[str, Any] = {}  # tensors, or what `reduce` made of them
        self._undo: list[Callable[[], None]] = []

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            raise LayerError(f"layer {name!r} did not run in the forward pass")
        return self.outputs[name]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output if self.reduce is None else self.reduce(output)

        return hook

    def __enter__(self) -> Probe:
        try:
            was_training = self.net.training
            self.net.eval()
            self._undo.append(lambda: self.net.train(was_training))
            if not self.param_grads:
                flags = [(p, p.requires_grad) for p in self.net.parameters()]
                for p, _ in flags:
                    p.requires_grad_(False)
                self._undo.append(lambda: [p.requires_grad_(f) for p, f in flags])
            # a reduced output is taken before anything downstream runs: inplace ops may stay
            inplace = [m for m in self.net.modules() if getattr(m, "inplace", None) is True and self.reduce is None]
            for m in inplace:
                m.inplace = False
            self._undo.append(lambda: [setattr(m, "inplace", True) for m in inplace])
            for name, module in self.modules.items():
                handle = module.register_forward_hook(self._hook(name))
                self._undo.append(handle.remove)
            if self.rule is not None:
                rule = backward_rule(self.rule)
                rule.__enter__()
                self._undo.append(lambda: rule.__exit__(None, None, None))
        except BaseException:
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def __exit__(self, *exc: object) -> None:
        self._restore()


# ---------------------------------------------------------------- partial forward passes


class _Stop(Exception):
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, (tuple, list)) else output


def forward_until(net: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Run `net` on `x` only as far as `layer` and return that layer's output."""
    module = resolve_layer(net, layer)

    def stop(m: nn.Module, i: Any, o: Any) -> None:
        raise _Stop(_first(o))

    handle = module.register_forward_hook(stop)
    try:
        net(x)
    except _Stop as s:
        return s.value
    finally:
        handle.remove()
    raise LayerError(f"layer {layer!r} did not run in the forward pass")


@dataclass
class Trace:
    """What one dry-run forward saw of each module: call order and output shape."""

    order: list[str]
    shapes: dict[str, tuple[int, ...]]
    calls: dict[str, int]
    start: dict[str, int]
    end: dict[str, int]


def trace(net: nn.Module, x: torch.Tensor) -> Trace:
    """One forward pass recording, for every named module, when it started and ended and its
    output shape (batch dimension dropped)."""
    counter = [0]
    t = Trace([], {}, {}, {}, {})
    handles = []
    for name, m in net.named_modules():
        if not name:
            continue

        def pre(mod: nn.Module, inp: Any, name: str = name) -> None:
            counter[0] += 1
            t.start.setdefault(name, counter[0])
            t.calls[name] = t.calls.get(name, 0) + 1

        def post(mod: nn.Module, inp: Any, out: Any, name: str = name) -> None:
            counter[0] += 1
            t.end[name] = counter[0]
            o = _first(out)
            if isinstance(o, torch.Tensor):
                t.shapes.setdefault(name, tuple(o.shape[1:]))
            if name not in t.order:
                t.order.append(name)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return t


@contextmanager
def resume_from(net: nn.Module, tr: Trace, layer: str, value: torch.Tensor) -> Iterator[None]:
    """Within this context a forward pass skips everything that ran before `layer` (and
    `layer` itself) and continues from `value` as that layer's output.

    The skipped modules return uninitialised tensors of their recorded shapes, which is
    exact when `layer`'s output is the only value the rest of the network reads (a cut
    between two blocks of a sequential stage). Callers verify that on a sample.
    """
    cut_start = tr.start[layer]
    batch = value.shape[0]
    names = [n for n in tr.order if tr.end[n] < cut_start and tr.calls.get(n) == 1]
    # only the outermost finished modules need stubbing
    stubs = [n for n in names if not any(n.startswith(p + ".") for p in names)]
    modules = dict(net.named_modules())
    patched: list[tuple[nn.Module, Any]] = []  # (module, its own forward attribute if any)

    def empty(shape: tuple[int, ...]) -> Callable[..., torch.Tensor]:
        return lambda *a, **k: value.new_empty((batch, *shape))

    try:
        for n in stubs:
            if n in tr.shapes:
                patched.append((modules[n], modules[n].__dict__.get("forward")))
                modules[n].forward = empty(tr.shapes[n])  # type: ignore[method-assign]
        patched.append((modules[layer], modules[layer].__dict__.get("forward")))
        modules[layer].forward = lambda *a, **k: value  # type: ignore[method-assign]
        yield
    finally:
        for m, own in reversed(patched):
            if own is None:
                del m.forward
            else:
                m.forward = own  # type: ignore[method-assign]


# ---------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class ReceptiveField:
    """Output position j of a layer sees input pixels [j*stride - offset, j*stride - offset + size)
    along each axis (rows, then columns)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    clipped: bool = False  # the field reached the input border: size is a lower bound

    def span(self, j: int, axis: int) -> tuple[int, int]:
        lo = j * self.stride[axis] - self.offset[axis]
        return lo, lo + self.size[axis]


def _positive_copy(net: nn.Module) -> nn.Module:
    """A float64 copy whose every path carries a positive signal, so that an output's input
    gradient is non-zero exactly on its receptive field: weights become 1/fan-in, biases 0,
    batch norms the identity, max pooling average pooling."""
    pos = copy.deepcopy(net).float().eval()
    with torch.no_grad():
        for name, p in pos.named_parameters():
            if p.dim() >= 2:
                p.fill_(1.0 / max(1, p[0].numel()))
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
    backpropagating from one output position of a positive copy of the network."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    with torch.inference_mode(False):
        return _receptive_fields(_positive_copy(net), h, w, layers)


def _receptive_fields(pos: nn.Module, h: int, w: int, layers: Sequence[str]) -> dict[str, ReceptiveField]:
    # small inputs keep residual sums far from saturating activations such as ReLU6
    x = torch.full((1, 3, h, w), 1e-3, dtype=torch.float32, requires_grad=True)
    with Probe(pos, layers) as probe, torch.enable_grad():
        try:
            pos(x)
        except Exception:  # noqa: BLE001 - a model the copy cannot run simply has no fields
            return {}
        outs = dict(probe.outputs)
    fields: dict[str, ReceptiveField] = {}
    for name in layers:
        o = outs.get(name)
        if not isinstance(o, torch.Tensor) or o.dim() != 4 or not o.requires_grad:
            continue
        oh, ow = o.shape[-2:]
        if oh < 2 or ow < 2:
            continue
        y0, x0 = oh // 2, ow // 2
        (g,) = torch.autograd.grad(o[0, :, y0, x0].sum(), x, retain_graph=True)
        nz = g[0].abs().sum(0) > 0
        rows = torch.nonzero(nz.any(1)).flatten()
        cols = torch.nonzero(nz.any(0)).flatten()
        if rows.numel() == 0:
            continue
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        sy, sx = max(1, round(h / oh)), max(1, round(w / ow))
        fields[name] = ReceptiveField(
            size=(r1 - r0 + 1, c1 - c0 + 1),
            stride=(sy, sx),
            offset=(y0 * sy - r0, x0 * sx - c0),
            clipped=r0 == 0 or c0 == 0 or r1 == h - 1 or c1 == w - 1,
        )
    return fields
