from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, Occlusion, Saliency
from scipy.stats import spearmanr
from torch import nn

import visionlens as vl
from visionlens.errors import ArgumentError, LayerError, TargetError
from visionlens.layers import last_spatial_layer

from .conftest import FunctionalNet, ReLUNet, seeded


class _RefGuided(torch.autograd.Function):
    """Reference guided rule for clamp(x, 0, hi), written independently of visionlens."""

    @staticmethod
    def forward(ctx, x, hi):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.hi = hi
        return x.clamp(0, hi)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0) * (x < ctx.hi), None


class _RefAct(nn.Module):
    def __init__(self, hi: float) -> None:
        super().__init__()
        self.hi = hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RefGuided.apply(x, self.hi)


def _reference_guided(net: nn.Module, hi: float) -> nn.Module:
    ref = copy.deepcopy(net)
    for parent in ref.modules():
        for name, child in parent.named_children():
            if isinstance(child, (nn.ReLU, nn.ReLU6)):
                setattr(parent, name, _RefAct(hi))
    return ref


def _grad(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    net(x).gather(1, t[:, None]).sum().backward()
    return x.grad


def test_saliency_matches_captum_small(images: torch.Tensor) -> None:
    net = seeded(ReLUNet())
    t = torch.tensor([3, 7])
    ours = vl.saliency(net, images, t)
    theirs = Saliency(net).attribute(images, target=t, abs=True).amax(1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_saliency_matches_captum_bundled(bundled: vl.Model, chelsea: torch.Tensor) -> None:
    ours = vl.saliency(bundled, chelsea, 282)
    theirs = Saliency(bundled.net).attribute(chelsea, target=282, abs=True).amax(1)
    assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, float(theirs.abs().max()))


def test_guided_matches_captum_on_plain_relu(images: torch.Tensor) -> None:
    net = seeded(ReLUNet())
    t = torch.tensor([1, 2])
    theirs = GuidedBackprop(net).attribute(images, target=t)
    assert torch.allclose(vl.guided_backprop(net, images, t), theirs, atol=1e-6)
    assert not torch.allclose(theirs, _grad(net, images, t), atol=1e-4)  # the rule did something


def test_guided_relu6_inplace_against_reference(images: torch.Tensor) -> None:
    net = seeded(ReLUNet(act=nn.ReLU6, inplace=True))
    t = torch.tensor([4, 5])
    x = images * 3
    out_before = net(x).detach()
    ours = vl.guided_backprop(net, x, t)
    ref = _grad(_reference_guided(net, 6.0), x, t)
    assert torch.allclose(ours, ref, atol=1e-6)
    plain = _grad(net, x, t)
    # Captum only rewrites nn.ReLU, so on ReLU6 it returns the plain gradient
    assert torch.allclose(GuidedBackprop(net).attribute(x, target=t), plain, atol=1e-6)
    assert not torch.allclose(ours, plain, atol=1e-4)
    assert torch.equal(net(x).detach(), out_before)
    assert all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU6))


def test_guided_functional_relu() -> None:
    net = seeded(FunctionalNet())
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 12)
    t = torch.tensor([0, 3])
    ours = vl.guided_backprop(net, x, t)

    class Ref(nn.Module):  # the same network with every activation routed through the reference
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            big = float("inf")
            x = _RefGuided.apply(net.c1(x), big)
            x = _RefGuided.apply(net.c2(x), big)
            x = _RefGuided.apply(net.c3(x), big)
            x = _RefGuided.apply(net.c4(x), 6.0)
            return net.fc(x.mean((2, 3)))

    assert torch.allclose(ours, _grad(Ref(), x, t), atol=1e-6)
    assert not torch.allclose(ours, _grad(net, x, t), atol=1e-4)


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
def test_occlusion_matches_captum_small(baseline: str) -> None:
    net = seeded(ReLUNet())
    torch.manual_seed(2)
    x = torch.randn(2, 3, 30, 30)
    t = torch.tensor([2, 6])
    ours = vl.occlusion(net, x, t, window=6, stride=4, baseline=baseline)
    from visionlens.attribution.occlusion import make_baseline

    base = make_baseline(x, baseline)
    theirs = Occlusion(lambda i: net(i).softmax(-1)).attribute(
        x, sliding_window_shapes=(3, 6, 6), strides=(3, 4, 4), target=t, baselines=base
    )
    assert torch.allclose(ours, theirs[:, 0], atol=1e-6)


@pytest.mark.slow
def test_occlusion_matches_captum_bundled(bundled: vl.Model, chelsea: torch.Tensor) -> None:
    ours = vl.occlusion(bundled, chelsea, 282, window=16, stride=16)
    with torch.no_grad():
        theirs = Occlusion(lambda i: bundled.net(i).softmax(-1)).attribute(
            chelsea,
            sliding_window_shapes=(3, 16, 16),
            strides=(3, 16, 16),
            target=282,
            baselines=0,
            perturbations_per_eval=16,
        )
    assert (ours - theirs[:, 0]).abs().max() <= 1e-4 * float(theirs.abs().max())


@pytest.mark.slow
def test_incremental_occlusion_is_exact(bundled: vl.Model, chelsea: torch.Tensor) -> None:
    fast, _ = vl.occlusion_windows(bundled, chelsea, 282, window=20, stride=12, baseline="blur")
    slow, _ = vl.occlusion_windows(bundled, chelsea, 282, window=20, stride=12, baseline="blur", incremental=False)
    assert fast.shape == (1, 18, 18)
    assert (fast - slow).abs().max() <= 1e-5


def _cat_mask(image: np.ndarray) -> np.ndarray:
    """The cat in skimage's chelsea, from the image itself: its fur is saturated, the blurred
    background is not."""
    from scipy import ndimage
    from skimage.color import rgb2hsv

    sat = ndimage.uniform_filter(rgb2hsv(image)[..., 1], 15)
    mask = ndimage.binary_opening(sat > 0.3, iterations=3)
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_gradcam_and_occlusion_peak_on_the_cat(bundled: vl.Model, method: str) -> None:
    from PIL import Image

    img = vl.sample_image("chelsea").resize((224, 224), Image.BICUBIC)
    x = bundled.preprocessing.normalize(torch.from_numpy(np.asarray(img) / 255.0).permute(2, 0, 1).float())[None]
    mask = _cat_mask(np.asarray(img) / 255.0)
    assert 0.3 < mask.mean() < 0.9  # the mask found the cat, not everything
    assert int(vl.classify(bundled, x, 1)[1][0, 0]) in range(281, 286)
    heat = vl.gradcam(bundled, x)[0] if method == "gradcam" else vl.occlusion(bundled, x, window=24, stride=12)[0]
    y, xx = np.unravel_index(int(heat.argmax()), heat.shape)
    assert mask[y, xx]
    assert float(heat[torch.from_numpy(mask)].mean()) > float(heat[~torch.from_numpy(mask)].mean())


def test_saliency_randomization_sanity_check(bundled: vl.Model, chelsea: torch.Tensor) -> None:
    trained = vl.saliency(bundled, chelsea, 282)[0].flatten().numpy()
    rand = copy.deepcopy(bundled.net)
    torch.manual_seed(0)
    for m in rand.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
    randomized = vl.saliency(rand, chelsea, 282)[0].flatten().numpy()
    assert spearmanr(trained, randomized).statistic < 0.5


def test_gradcam_layers_and_targets(bundled: vl.Model, chelsea: torch.Tensor) -> None:
    assert last_spatial_layer(bundled) == "bn2"
    cam = vl.gradcam(bundled, chelsea, "tiger cat", layer="blocks.5")
    assert cam.shape == (1, 224, 224) and float(cam.max()) > 0
    with pytest.raises(LayerError, match="output shape 1000 .vector., not a map; layers that are maps: .*bn2"):
        vl.gradcam(bundled, chelsea, layer="classifier")
    with pytest.raises(TargetError, match="out of range"):
        vl.saliency(bundled, chelsea, 1000)
    with pytest.raises(TargetError, match="2 targets for a batch of 1"):
        vl.saliency(bundled, chelsea, [1, 2])
    with pytest.raises(ArgumentError, match="larger than"):
        vl.occlusion(bundled, chelsea, window=300)


def test_batches_equal_single_images(bundled: vl.Model) -> None:
    x = bundled.prepare(["chelsea", "coffee"])
    both = vl.saliency(bundled, x)
    one = vl.saliency(bundled, x[1:])
    assert torch.allclose(both[1], one[0], atol=1e-6)
    sg = vl.smoothgrad(bundled, x, samples=4, batch_size=3)
    assert sg.shape == (2, 224, 224) and bool((sg >= 0).all())


def test_gradients_work_inside_no_grad_and_inference_mode(images: torch.Tensor) -> None:
    net = seeded(ReLUNet())
    ref = vl.saliency(net, images)
    with torch.no_grad():
        assert torch.equal(vl.saliency(net, images), ref)
    with torch.inference_mode():
        assert torch.equal(vl.saliency(net, images), ref)
