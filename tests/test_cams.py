"""The CAM family against pytorch-grad-cam (the oracle): the same model, layer and target give
the same map before min-max scaling (its `get_cam_image` after the ReLU, at the layer's
resolution), on the bundled model, a torchvision ResNet, a ViT (DeiT, with class and
distillation tokens) and a Swin (channels-last), for class, contrast and segmentation-region
targets; plus the dispatcher's bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget
from torch import nn

import visionlens as vl
from visionlens.attribution import cams
from visionlens.attribution.targets import Contrast, Region
from visionlens.errors import ArgumentError

from .archs import deit_tiny, swin_tiny


class _ZeroAblation(AblationLayer):
    """pytorch-grad-cam's ablation layer always writing zero (the paper's ablation; the
    library's own writes min - 1e7 * (position in the batch) on layers with negative values)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.activations.size(0)):
            self.activations[i, self.indices[i]] = 0
        return self.activations


class _ZeroAblationVit(AblationLayerVit):
    """The same for token and channels-last outputs (channels last)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.activations.size(0)):
            self.activations[i, ..., self.indices[i]] = 0
        return self.activations


PEERS: dict[str, Any] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "eigencam": EigenCAM,
}
GRADIENT = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"]
ALL = [*GRADIENT, "scorecam", "ablationcam", "eigencam"]
BATCH = 64


def _peer(
    method: str,
    net: nn.Module,
    module: nn.Module,
    x: torch.Tensor,
    targets: list[Callable],
    reshape: Callable | None = None,
    ablation: AblationLayer | None = None,
) -> np.ndarray:
    """pytorch-grad-cam's map after its ReLU, before scaling and resizing."""
    kw: dict[str, Any] = {}
    if method == "ablationcam":
        kw = {"batch_size": BATCH, **({"ablation_layer": ablation} if ablation is not None else {})}
    peer = PEERS[method](net, [module], reshape_transform=reshape, **kw)
    peer.batch_size = BATCH  # Score-CAM's
    if peer.uses_gradients:
        peer(x, targets)
    else:  # the forward pass capturing the activations; the method's own passes follow
        peer.activations_and_grads(x)
    ag = peer.activations_and_grads
    acts = ag.activations[0].numpy()
    grads = ag.gradients[0].numpy() if peer.uses_gradients else None
    out = peer.get_cam_image(x, module, targets, acts, grads, False)
    ag.release()
    return np.maximum(out, 0)


def _check(ours: torch.Tensor, peer: np.ndarray) -> None:
    assert tuple(ours.shape) == peer.shape
    assert peer.max() > 0
    np.testing.assert_allclose(ours.numpy(), peer, atol=1e-4 * float(peer.max()), rtol=0)


def _ours(method: str, model: Any, x: torch.Tensor, target: Any, layer: str) -> torch.Tensor:
    return cams.cam(model, x, target, method=method, layer=layer, upsample=False, batch_size=BATCH)


@pytest.fixture(scope="module")
def bundled() -> tuple[vl.Model, torch.Tensor, str]:
    model = vl.load_model()
    x = model.prepare("chelsea", size=96)
    return model, x, vl.last_spatial_layer(model, x.shape[-1])


@pytest.mark.parametrize("method", [*GRADIENT, "eigencam"])
def test_bundled_model(method: str, bundled: tuple[vl.Model, torch.Tensor, str]) -> None:
    model, x, layer = bundled
    assert layer == "bn2"
    ours = _ours(method, model, x, "tiger cat", layer)
    _check(ours, _peer(method, model.net, model.net.bn2, x, [ClassifierOutputTarget(282)]))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_bundled_model_by_scores(method: str, bundled: tuple[vl.Model, torch.Tensor, str]) -> None:
    # 1280 channels: pytorch-grad-cam runs 1280 copies through the whole network
    model, x, layer = bundled
    ours = _ours(method, model, x, "tiger cat", layer)
    _check(ours, _peer(method, model.net, model.net.bn2, x, [ClassifierOutputTarget(282)]))


@pytest.fixture(scope="module")
def resnet() -> tuple[vl.Model, torch.Tensor]:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))  # a 3 x 3 layer3
    return vl.as_model(net), x


@pytest.mark.parametrize("method", ALL)
def test_resnet_one_target_per_image(method: str, resnet: tuple[vl.Model, torch.Tensor]) -> None:
    model, x = resnet
    net: Any = model.net
    ours = _ours(method, model, x, [3, 7], "layer3")
    _check(ours, _peer(method, net, net.layer3, x, [ClassifierOutputTarget(3), ClassifierOutputTarget(7)]))


@pytest.mark.parametrize("method", ALL)
def test_contrast_target(method: str, resnet: tuple[vl.Model, torch.Tensor]) -> None:
    model, x = resnet
    net: Any = model.net
    x = x[:1]
    logits = model.logits(x)[0]
    a, b = (int(i) for i in logits.topk(2).indices)  # the top class against the second
    ours = _ours(method, model, x, Contrast(a, b), "layer3")
    _check(ours, _peer(method, net, net.layer3, x, [lambda o: o[..., a] - o[..., b]]))


def _tokens(h: int, w: int, prefix: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(t: torch.Tensor) -> torch.Tensor:  # what a pytorch-grad-cam user writes by hand
        return t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    return reshape


@pytest.mark.parametrize("method", ALL)
def test_vit_tokens(method: str) -> None:
    model = deit_tiny()  # a class and a distillation token before the 4 x 4 patch grid
    net: Any = model.net
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    target = int(model.logits(x)[0].argmax())
    ours = _ours(method, model, x, target, "blocks.11.norm1")
    peer = _peer(
        method, net, net.blocks[-1].norm1, x, [ClassifierOutputTarget(target)] * 2, _tokens(4, 4, 2), _ZeroAblationVit()
    )
    _check(ours, peer)


@pytest.mark.parametrize("method", [*GRADIENT, "eigencam", pytest.param("ablationcam", marks=pytest.mark.slow)])
def test_swin_channels_last(method: str) -> None:
    model = swin_tiny()
    net: Any = model.net
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target = int(model.logits(x)[0].argmax())
    ours = _ours(method, model, x, target, "norm")
    reshape = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731
    _check(ours, _peer(method, net, net.norm, x, [ClassifierOutputTarget(target)], reshape, _ZeroAblationVit()))


class _Out(nn.Module):
    """What pytorch-grad-cam needs of a torchvision segmentation model: a tensor output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


@pytest.fixture(scope="module")
def segmenter() -> tuple[vl.Model, torch.Tensor, np.ndarray]:
    torch.manual_seed(0)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    mask = np.zeros((64, 64), np.float32)
    mask[16:40, 8:48] = 1
    return vl.as_model(net), x, mask


@pytest.mark.parametrize("method", ALL)
def test_region_target(method: str, segmenter: tuple[vl.Model, torch.Tensor, np.ndarray]) -> None:
    model, x, mask = segmenter
    net: Any = model.net
    # with random weights only the early ("low") features reach the output much; deeper in,
    # Grad-CAM++'s denominators 2 g^2 + sum(A) g^3 come near zero and float32 rounding decides
    ours = _ours(method, model, x, Region(5, torch.from_numpy(mask)), "backbone.1")
    # an inverted residual's output has negative values: the peer ablates to zero too
    peer = _peer(
        method, _Out(net), net.backbone["1"], x, [SemanticSegmentationTarget(5, mask)], ablation=_ZeroAblation()
    )
    _check(ours, peer)


class _Concat(nn.Module):
    """A network that concatenates a layer's output with an earlier map: the ablated copies
    cannot share one pass of what comes before the layer, and run whole."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.fc(torch.cat([s, self.body(s)], 1).mean((2, 3)))


def test_ablation_without_broadcasting() -> None:
    torch.manual_seed(0)
    net = _Concat().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    ours = cams.ablationcam(net, x, [0, 2], layer="body", upsample=False, batch_size=4)
    _check(ours, _peer("ablationcam", net, net.body, x, [ClassifierOutputTarget(0), ClassifierOutputTarget(2)]))


class _Viewing(nn.Module):
    """A network that `.view`s a map: no channels-last layout for it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1))
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.adaptive_avg_pool2d(self.body(x), 4)  # any input size (the dry runs are 224 px)
        return self.fc(h.view(h.shape[0], -1))


def test_network_refusing_channels_last() -> None:
    torch.manual_seed(0)
    net = _Viewing().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(RuntimeError):
        net(x.contiguous(memory_format=torch.channels_last))
    for method in ("scorecam", "ablationcam"):
        ours = cams.cam(net, x, [0, 1], method=method, layer="body.0", upsample=False, batch_size=4)
        peer = _peer(
            method,
            net,
            net.body[0],
            x,
            [ClassifierOutputTarget(0), ClassifierOutputTarget(1)],
            ablation=_ZeroAblation(),
        )
        _check(ours, peer)
    assert all(p.is_contiguous() for p in net.parameters())  # the weights' layout is restored


def test_batch_size_does_not_change_maps(resnet: tuple[vl.Model, torch.Tensor]) -> None:
    model, x = resnet[0], resnet[1][..., :32, :32]
    for method in ("gradcam++", "scorecam", "ablationcam", "eigencam"):
        big = cams.cam(model, x, None, method=method, layer="layer1")
        small = cams.cam(model, x, None, method=method, layer="layer1", batch_size=5)
        assert big.shape == (2, 32, 32)
        torch.testing.assert_close(small, big, rtol=1e-4, atol=1e-5 * float(big.max()))
    default = cams.cam(model, x, 1, batch_size=1)  # Grad-CAM runs the batch at once
    torch.testing.assert_close(default, vl.gradcam(model, x, 1))


def test_train_mode_model(resnet: tuple[vl.Model, torch.Tensor]) -> None:
    # the copies are scored in eval mode (no batch statistics), and the mode is restored
    model, x = resnet[0], resnet[1][..., :32, :32]
    expected = {m: cams.cam(model, x, method=m, layer="layer1") for m in ("gradcam++", "scorecam", "ablationcam")}
    model.net.train()
    try:
        for method, ref in expected.items():
            torch.testing.assert_close(cams.cam(model, x, method=method, layer="layer1"), ref)
            assert model.net.training
    finally:
        model.net.eval()
    assert all(p.is_contiguous() for p in model.net.parameters())  # the weights' layout is restored


def test_unknown_method() -> None:
    model = vl.load_model()
    with pytest.raises(ArgumentError, match=r"unknown `method` 'gradcampp'; did you mean .*gradcam\+\+"):
        cams.cam(model, torch.zeros(1, 3, 32, 32), method="gradcampp")
    with pytest.raises(ArgumentError, match=r"unknown `method` 'shap'; choose from gradcam, gradcam\+\+, hirescam"):
        cams.cam(model, torch.zeros(1, 3, 32, 32), method="shap")
    assert set(cams.CAMS) == set(PEERS)
