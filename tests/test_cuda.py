"""On a CUDA device, where this machine has one (skipped where it has none): every attribution
method, the receptive fields and the synthesis techniques run there and agree with the CPU.
Occlusion's equality tests (test_occlusion) also run on CUDA."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from scipy.stats import spearmanr

import visionlens as vl
from visionlens.attribution.methods import attribution, available_methods

from . import archs
from .devices import on

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.fixture(autouse=True)
def _float32() -> Iterator[None]:
    """float32 convolutions, not TF32: the CPU's maps are the reference at 1e-3."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


# maps that a change in the last bit of the input moves by more than 1e-3 of their maximum
# (measured on the CPU: Integrated Gradients' path and SmoothGrad's samples cross ReLU kinks,
# Ablation-CAM's weights are differences of close scores): compared by rank instead
UNSTABLE = {"ig", "smoothgrad", "ablationcam"}


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-3) -> bool:
    return float((a.cpu() - b.cpu()).abs().max()) <= tol * float(b.abs().max()) + 1e-7


def _same_ranks(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float(spearmanr(a.cpu().flatten().numpy(), b.cpu().flatten().numpy()).statistic) > 0.99


@pytest.mark.parametrize("name", ["resnet50", "vit_small", "swin_tiny"])
def test_every_method_on_cuda_equals_the_cpu(name: str) -> None:
    model = archs.MATRIX[name]()
    gpu = on(model, "cuda")
    torch.manual_seed(0)
    x = torch.randn(1, 3, archs.SIZE, archs.SIZE)
    for method in available_methods(model):
        cpu_map = attribution(model, x, method, 3)
        gpu_map = attribution(gpu, x.cuda(), method, 3)
        assert gpu_map.device.type == "cuda", method
        assert _same_ranks(gpu_map, cpu_map) if method in UNSTABLE else _close(gpu_map, cpu_map), method


def test_receptive_fields_on_cuda_equal_the_cpu() -> None:
    model = archs.resnet50()
    layers = ["layer1", "layer2.0.conv1", "layer3"]
    cpu = vl.receptive_fields(model.net, archs.SIZE, layers)
    gpu = vl.receptive_fields(on(model, "cuda").net, archs.SIZE, layers)
    assert cpu and gpu == cpu


def test_synthesis_runs_on_cuda() -> None:
    """Fourier images started from a picture (style transfer), from noise (a unit), and the
    other techniques of the synthesis loop, a few steps each: finite pictures on the GPU."""
    model = on(archs.resnet50(), "cuda")
    x = torch.rand(1, 3, archs.SIZE, archs.SIZE, device="cuda")
    results = [
        vl.style_transfer(model, x, x.flip(-1), steps=4, content_layer="layer3", style_layers=["layer1", "layer2"]),
        vl.visualize(model, "layer3", 0, size=archs.SIZE, steps=4),
        vl.invert(model, x, "layer2", steps=4),
        vl.texture(model, x, layers=["layer1", "layer2"], size=archs.SIZE, steps=4),
        vl.dream(model, x, "layer2", octaves=2, steps=2),
    ]
    for r in results:
        assert torch.isfinite(r.images).all() and r.images.std() > 0


def test_evaluate_on_cuda_scores_like_the_cpu() -> None:
    model = archs.resnet50()
    torch.manual_seed(1)
    x = torch.randn(1, 3, archs.SIZE, archs.SIZE)
    kw = {"methods": ["gradient", "gradcam"], "target": 2, "steps": 8}
    cpu, gpu = vl.evaluate(model, x, **kw), vl.evaluate(on(model, "cuda"), x.cuda(), **kw)
    for a, b in zip(cpu.scores, gpu.scores, strict=True):
        assert a.method == b.method and b.seconds > 0
        # the curve deletes pixels in the map's order: maps equal to 1e-6 can order near-ties
        # differently (measured on the CPU: 1e-6 of noise on the Grad-CAM map moves it 1e-3)
        assert abs(a.deletion_auc - b.deletion_auc) < 1e-2
