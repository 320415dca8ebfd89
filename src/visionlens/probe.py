"""The one way visionlens reaches inside a network.

`Probe` captures the outputs of named layers (and, through autograd, their gradients) and can
route every ReLU-family activation through the guided-backprop rule. It always restores the
model on exit: hooks removed, training flag, parameters' requires_grad and inplace flags.

Also here: resolving dotted layer names. Running a network up to (or on from) a layer lives in
`tracing`, receptive fields in `fields`, structural queries (default layers) in `layers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import LayerError, closest


def layer_names(net: nn.Module) -> list[str]:
    """Every submodule's dotted name, in module order (the root, named "", left out)."""
    return [n for n, _ in net.named_modules() if n]


def resolve_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule with this dotted name, or a LayerError naming the closest valid ones.

    Args:
        net: the network.
        name: PyTorch's own dotted module name, as `net.named_modules()` gives it.

    Returns:
        The submodule. A name that does not exist is a `LayerError` naming the closest ones.

    Example:
        >>> net = vl.load_model().net
        >>> type(vl.resolve_layer(net, "blocks.3.0.conv_pw")).__name__
        'Conv2d'
    """
    modules = dict(net.named_modules())
    if name in modules and name:
        return modules[name]
    names = layer_names(net)
    close = closest(name, names, n=5, cutoff=0.5)
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


# functional activations whose `inplace=True` would overwrite a captured layer output
_FUNCTIONAL_INPLACE = {
    F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.celu, F.selu, F.silu, F.hardswish, F.hardsigmoid,
    F.mish, F.threshold, F.rrelu, F.dropout,
}  # fmt: skip


class _ActivationMode(TorchFunctionMode):
    """Runs functional activations called with `inplace=True` out of place (DenseNet's
    `F.relu(features, inplace=True)` would otherwise overwrite the captured output of the
    norm before it), and with a `rule`, routes ReLU, ReLU6 and hardtanh through a custom
    backward rule whether they come from modules (nn.ReLU, nn.ReLU6, inplace or not) or
    from functional calls inside `forward`; `routed` counts the activations it rerouted.

    The guided rule needs no custom function: the activation's own backward already zeroes
    the gradient outside its range, so a hook that keeps only the positive part of the
    incoming gradient on its output gives exactly guided backprop at native speed."""

    def __init__(self, rule: str | None) -> None:
        super().__init__()
        self.rule = rule
        self.routed = 0

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _FUNCTIONAL_INPLACE:
            if kwargs.get("inplace"):
                kwargs = {**kwargs, "inplace": False}
            args = tuple(False if i > 0 and a is True else a for i, a in enumerate(args))
        if self.rule is None:
            return func(*args, **kwargs)
        bounds = _clamp_args(func, args, kwargs)
        if bounds is None or not isinstance(args[0], torch.Tensor) or not args[0].requires_grad:
            return func(*args, **kwargs)
        self.routed += 1
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
    (`backward_rule="guided"` for guided backprop, "redirect" for feature visualization).

        with Probe(net, ["blocks.3"]) as probe:
            logits = net(x)
            act = probe["blocks.3"]          # part of the autograd graph

    On entry the model is put in eval mode, parameters stop requiring gradients (only input
    gradients are needed), and inplace activations become out-of-place so captured tensors
    are not overwritten (functional ones too: `F.relu(x, inplace=True)` runs out of place).
    With `reduce`, each output is replaced at once by `reduce(name, output)`
    (e.g. pooled statistics) and inplace activations stay as they are. Everything is
    restored on exit, also when an exception passes.

    Args:
        net: the network (a `Model`'s `.net`).
        layers: dotted names of the layers whose outputs to capture; `probe[name]` gives the
            output of the last forward pass (the first element when a layer returns a tuple).
        param_grads: leave parameters requiring gradients (default: frozen while inside).
        backward_rule: None, "guided" (guided backprop) or "redirect" (redirected ReLU).
        reduce: applied as reduce(name, output) to each captured output at once (e.g.
            pooling to (B, C)); what it returns is stored instead of the output.

    Example:
        >>> model = vl.load_model()
        >>> with vl.Probe(model.net, ["blocks.3"]) as probe:
        ...     logits = model.net(model.prepare("chelsea"))
        ...     act = probe["blocks.3"]
        >>> act.shape
        torch.Size([1, 80, 14, 14])
    """

    def __init__(
        self,
        net: nn.Module,
        layers: Sequence[str] = (),
        *,
        param_grads: bool = False,
        backward_rule: str | None = None,
        reduce: Callable[[str, torch.Tensor], Any] | None = None,
    ) -> None:
        self.net = net
        self.reduce = reduce
        self.layers = list(layers)
        self.modules = {name: resolve_layer(net, name) for name in self.layers}
        self.rule = backward_rule
        if self.rule is not None and self.rule not in BACKWARD_RULES:
            raise ValueError(f"unknown backward rule {self.rule!r}")
        self.param_grads = param_grads
        self.mode: _ActivationMode | None = None  # the function mode while inside, if any
        self.outputs: dict[str, Any] = {}  # tensors, or what `reduce` made of them
        self._undo: list[Callable[[], object]] = []  # run last-first on exit; results ignored

    @property
    def routed(self) -> int:
        """How many activations the backward rule rerouted so far (0: it had nothing to act on)."""
        return self.mode.routed if self.mode is not None else 0

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            raise LayerError(f"layer {name!r} did not run in the forward pass")
        return self.outputs[name]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[name] = output if self.reduce is None else self.reduce(name, output)

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
            _set_inplace(inplace, False)
            self._undo.append(lambda: _set_inplace(inplace, True))
            for name, module in self.modules.items():
                handle = module.register_forward_hook(self._hook(name))
                self._undo.append(handle.remove)
            if self.rule is not None or (self.layers and self.reduce is None):
                mode = self.mode = _ActivationMode(self.rule)
                mode.__enter__()
                self._undo.append(lambda: mode.__exit__(None, None, None))
        except BaseException:
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def __exit__(self, *exc: object) -> None:
        self._restore()


def _set_inplace(modules: Sequence[nn.Module], value: bool) -> None:
    # setattr: nn.Module's typed __setattr__ admits only tensors and modules
    for m in modules:
        setattr(m, "inplace", value)  # noqa: B010
