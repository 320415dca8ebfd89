"""What every attribution method shares: resolving targets and taking input gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ArgumentError, TargetError
from ..models import Model, as_model
from ..probe import Probe

Target = int | str | Sequence[int | str] | torch.Tensor | None


def resolve_targets(model: Model, logits: torch.Tensor, target: Target) -> torch.Tensor:
    """One class index per image: the predicted class when `target` is None, a single target
    for every image, or one per image (a length that disagrees with the batch is an error)."""
    batch, n = logits.shape[0], logits.shape[-1]
    if target is None:
        return logits.argmax(-1)
    if isinstance(target, torch.Tensor):
        target = target.flatten().tolist()
    if isinstance(target, (int, str)):
        target = [target] * batch
    if len(target) != batch:
        raise TargetError(f"{len(target)} targets for a batch of {batch} images; give one per image")
    idx = [model.class_index(t, n) for t in target]
    return torch.tensor(idx, device=logits.device)


def score(logits: torch.Tensor, targets: torch.Tensor, softmax: bool = False) -> torch.Tensor:
    """The per-image score of each target: its logit by default, or its probability."""
    out = logits.softmax(-1) if softmax else logits
    return out.gather(1, targets.view(-1, 1).to(out.device)).squeeze(1)


def input_gradient(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    softmax: bool = False,
    backward_rule: str | None = None,
    layers: Sequence[str] = (),
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """d score / d input for a batch, in one forward and one backward pass.

    Returns (input gradient, targets, {layer: (activation, gradient)}) where `layers` lists
    layers whose activations and activation gradients are wanted too (Grad-CAM)."""
    model = as_model(model)
    # gradients must flow even when called from inside no_grad / inference_mode
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().to(model.device).requires_grad_(True)
        with Probe(model.net, layers, backward_rule=backward_rule) as probe:
            logits = model.net(x)
            if backward_rule is not None and probe.routed == 0:
                raise ArgumentError(
                    f"{model.name} has no ReLU-family activation for the {backward_rule} backward rule to act on "
                    "(GELU, SiLU and other smooth activations have no such rule): its map would be the plain "
                    "gradient; use saliency or gradcam instead"
                )
            targets = resolve_targets(model, logits.detach(), target)
            s = score(logits, targets, softmax).sum()
            acts = [probe[name] for name in layers]
            grads = torch.autograd.grad(s, [x, *acts])
    captured = {name: (a.detach(), g) for name, a, g in zip(layers, acts, grads[1:], strict=False)}
    return grads[0], targets, captured
