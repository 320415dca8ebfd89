"""Gradient saliency (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

import torch

from ..models import Model, as_model
from ._common import Target, input_gradient


def saliency(
    model: Model | torch.nn.Module, x: torch.Tensor, target: Target = None, *, softmax: bool = False
) -> torch.Tensor:
    """(B, H, W): the maximum over colour channels of |d score / d pixel|."""
    grad, _, _ = input_gradient(model, x, target, softmax)
    return grad.abs().amax(1)


def smoothgrad(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    target: Target = None,
    *,
    samples: int = 25,
    noise: float = 0.15,
    batch_size: int = 16,
    softmax: bool = False,
    seed: int | None = 0,
) -> torch.Tensor:
    """(B, H, W): the gradient saliency map averaged over `samples` copies of each image with
    Gaussian noise of std `noise` x (max - min) of that image. Noisy copies go through the
    network in batches of `batch_size`, several images at a time."""
    model = as_model(model)
    x = x.to(model.device)
    if target is None:
        with torch.inference_mode():
            target = model.net.eval()(x).argmax(-1).tolist()
    elif isinstance(target, (int, str)):
        target = [target] * x.shape[0]
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    # every (image, sample) pair, flattened so that batches mix images when they are few
    owners = torch.arange(x.shape[0]).repeat_interleave(samples)
    targets = [target[int(i)] for i in owners] if not isinstance(target, torch.Tensor) else target[owners]
    total = torch.zeros(x.shape[0], *x.shape[2:], device=x.device)
    for start in range(0, owners.numel(), batch_size):
        idx = owners[start : start + batch_size]
        eps = torch.randn((idx.numel(), *x.shape[1:]), generator=gen).to(x.device)
        noisy = x[idx] + eps * noise * span[idx]
        tgt = targets[start : start + batch_size]
        grad, _, _ = input_gradient(model, noisy, tgt, softmax)
        total.index_add_(0, idx.to(x.device), grad.abs().amax(1))
    return total / samples
