"""Gradient saliency (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017)."""

from __future__ import annotations

import torch

from ..models import Model, as_model
from ._common import Target, check_positive, input_gradient
from .targets import bind


def saliency(
    model: Model | torch.nn.Module, x: torch.Tensor, target: Target = None, *, softmax: bool = False
) -> torch.Tensor:
    """Gradient saliency: the maximum over colour channels of |d score / d pixel|.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain: an index or name for every image, one per image, or
            None for each image's top-1 class.
        softmax: explain the target's probability instead of its logit.

    Returns:
        (B, H, W) saliency, >= 0, on the model's device.

    Example:
        >>> model = vl.load_model()
        >>> vl.saliency(model, model.prepare("chelsea"), "tiger cat").shape
        torch.Size([1, 224, 224])
    """
    grad, _, _ = input_gradient(model, x, target, softmax)
    assert grad is not None
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
    """SmoothGrad: the gradient saliency map averaged over `samples` copies of each image with
    Gaussian noise of std `noise` x (max - min) of that image. Noisy copies go through the
    network in batches of `batch_size`, several images at a time.

    Args:
        model: a `Model` or any `nn.Module` returning logits.
        x: model input as `model.prepare` makes it, (B, 3, H, W).
        target: the class(es) to explain (index or name, one per image, or None for top-1).
        samples: noisy copies per image.
        noise: the noise's std as a fraction of each image's value range.
        batch_size: noisy copies per forward/backward pass.
        softmax: explain the target's probability instead of its logit.
        seed: seed of the noise (None: a fresh generator's default seed, which is fixed too).

    Returns:
        (B, H, W) saliency, >= 0, on the model's device.

    Example:
        >>> model = vl.load_model()
        >>> vl.smoothgrad(model, model.prepare("chelsea"), samples=8).shape
        torch.Size([1, 224, 224])
    """
    model = as_model(model)
    check_positive(samples=samples, batch_size=batch_size)
    x = x.to(model.device)
    bound = bind(model, x, target, softmax)  # resolved on the clean images, as every method does
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    # every (image, sample) pair, flattened so that batches mix images when they are few
    owners = torch.arange(x.shape[0]).repeat_interleave(samples)
    total = torch.zeros(x.shape[0], *x.shape[2:], device=x.device)
    for start in range(0, owners.numel(), batch_size):
        idx = owners[start : start + batch_size]
        eps = torch.randn((idx.numel(), *x.shape[1:]), generator=gen).to(x.device)
        noisy = x[idx] + eps * noise * span[idx]
        grad, _, _ = input_gradient(model, noisy, bound=bound.take(idx))
        assert grad is not None
        total.index_add_(0, idx.to(x.device), grad.abs().amax(1))
    return total / samples
