"""What every attribution method shares: binding targets, taking input and layer gradients,
and scoring many modified copies of the images in bounded batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import ArgumentError
from ..models import Model, as_model
from ..probe import Probe
from .targets import BoundTarget, TargetSpec, as_target

Target = TargetSpec


def input_gradient(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    softmax: bool = False,
    backward_rule: str | None = None,
    layers: Sequence[str] = (),
    bound: BoundTarget | None = None,
    need_input: bool = True,
) -> tuple[torch.Tensor | None, BoundTarget, dict[str, Any]]:
    """d score / d input for a batch, in one forward and one backward pass.

    `bound`, when given, is the target already bound to the images the rows of `x` come from
    (noisy copies, interpolation steps); otherwise `target` is bound on this very output.
    Returns (input gradient or None when `need_input` is False, the bound target,
    {layer: (activation, gradient)}) where `layers` lists layers whose activations and
    activation gradients are wanted too (the CAM family)."""
    model = as_model(model)
    # gradients must flow even when called from inside no_grad / inference_mode
    with torch.inference_mode(False), torch.enable_grad():
        # the input always requires grad: with frozen parameters nothing else would start the graph
        x = x.detach().clone().to(model.device).requires_grad_(True)
        with Probe(model.net, layers, backward_rule=backward_rule) as probe:
            out = model.net(x)
            if backward_rule is not None and probe.routed == 0:
                raise ArgumentError(
                    f"{model.name} has no ReLU-family activation for the {backward_rule} backward rule to act on "
                    "(GELU, SiLU and other smooth activations have no such rule): its map would be the plain "
                    "gradient; use saliency or gradcam instead"
                )
            acts = [probe[name] for name in layers]  # before binding: a target may run the model too
            if bound is None:
                bound = as_target(target, softmax).bind(model, _detached(out))
            s = bound(out).sum()
            wrt = ([x] if need_input else []) + acts
            grads = torch.autograd.grad(s, wrt, allow_unused=True)
    if need_input:
        grads = (torch.zeros_like(x) if grads[0] is None else grads[0], *grads[1:])
    layer_grads = grads[1:] if need_input else grads
    captured = {
        name: (a.detach(), torch.zeros_like(a) if g is None else g)
        for name, a, g in zip(layers, acts, layer_grads, strict=False)
    }
    return (grads[0].detach() if need_input else None), bound, captured


def _detached(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, dict):
        return {k: _detached(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_detached(v) for v in out)
    return out


def batched_scores(
    run: Callable[[torch.Tensor], Any],
    bound: BoundTarget,
    owners: torch.Tensor,
    make: Callable[[slice], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """Scores of N modified copies, computed `batch_size` at a time without gradients:
    `make(slice)` builds the copies of rows `slice`, `owners[i]` is the image row i comes
    from, `run` maps a batch to the model output. Memory is bounded by `batch_size`."""
    n = owners.numel()
    out = torch.empty(n)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            s = bound.take(owners[sl])(run(make(sl)))
            out[sl] = s.float().cpu()
    return out


def check_positive(**values: int) -> None:
    """Raise an ArgumentError naming the first parameter that is not >= 1."""
    for name, v in values.items():
        if v < 1:
            raise ArgumentError(f"`{name}` must be at least 1, got {v}")
