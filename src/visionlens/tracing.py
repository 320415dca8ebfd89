"""Running a network partly: up to a layer (`forward_until`), on from a layer's output
(`resume_from`), and one dry run that records every module's call order and output shape
(`trace`); what named modules read and returned on one pass (`record_io`), and how long a pass
takes between them (`stage_seconds`, on `clock`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from .errors import LayerError
from .probe import resolve_layer


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
    batch: dict[str, int] = field(default_factory=dict)  # leading dimension of each output


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
                t.batch.setdefault(name, int(o.shape[0]) if o.dim() else 0)
            if name not in t.order:
                t.order.append(name)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    _hooked_pass(net, x, handles)
    return t


def _hooked_pass(net: nn.Module, x: torch.Tensor, hooks: list[Any]) -> None:
    """One pass over `x` in inference mode with `hooks` on; they are removed after it, whatever
    happens."""
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in hooks:
            h.remove()


def record_io(net: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple[Any, Any]]:
    """Each named module's input (when it takes one tensor, else None) and output (when a
    tensor, else None) on one pass over `x`, in inference mode. Copies: an inplace activation
    later in the pass would change what the hooks saw."""
    modules = dict(net.named_modules())
    seen: dict[str, list[Any]] = {n: [None, None] for n in names}

    def pre(m: nn.Module, args: Any, name: str) -> None:
        if len(args) == 1 and isinstance(args[0], torch.Tensor):
            seen[name][0] = args[0].clone()

    def post(m: nn.Module, args: Any, out: Any, name: str) -> None:
        if isinstance(out, torch.Tensor):
            seen[name][1] = out.clone()

    hooks = [modules[n].register_forward_pre_hook(partial(pre, name=n)) for n in names]
    hooks += [modules[n].register_forward_hook(partial(post, name=n)) for n in names]
    _hooked_pass(net, x, hooks)
    return {n: (a, b) for n, (a, b) in seen.items()}


def clock(device: torch.device) -> float:
    """`time.perf_counter()` once the work queued on `device` has run: CUDA kernels run
    asynchronously, and a timer read without waiting measures only their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def stage_seconds(net: nn.Module, x: torch.Tensor, names: list[str], passes: int = 3) -> list[float]:
    """Seconds of a forward pass over `x` up to the end of the first named module, between the
    ends of consecutive ones, and from the last to the pass's end (len(names) + 1 values): each
    the least over `passes` timed passes after a warm one (a pause of the process lands on one
    stage of one pass, and would otherwise read as that stage's cost)."""
    modules = dict(net.named_modules())
    ends: dict[str, float] = {}

    def stamp(m: nn.Module, i: Any, o: Any, name: str) -> None:
        if name not in ends:
            ends[name] = clock(x.device)

    hooks = [modules[n].register_forward_hook(partial(stamp, name=n)) for n in names]
    spans: list[list[float]] = []
    try:
        with torch.inference_mode():
            net(x)  # warm
            for _ in range(passes):
                ends.clear()
                t0 = clock(x.device)
                net(x)
                stamps = [t0, *(ends[n] for n in names), clock(x.device)]
                spans.append([b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)])
    finally:
        for h in hooks:
            h.remove()
    return [min(col) for col in zip(*spans, strict=True)]


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
                modules[n].forward = empty(tr.shapes[n])
        patched.append((modules[layer], modules[layer].__dict__.get("forward")))
        modules[layer].forward = lambda *a, **k: value
        yield
    finally:
        for m, own in reversed(patched):
            if own is None:
                del m.forward
            else:
                m.forward = own
