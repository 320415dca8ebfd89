"""Layer layouts: which outputs are maps and how they become (N, C, H, W); Grad-CAM on token and
channels-last layers given only the layer name, against pytorch-grad-cam given the hand-written
reshape_transform (the oracle, before its min-max scaling and resize)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import visionlens as vl
from visionlens.errors import LayerError
from visionlens.layermaps import MapLayout, layout_of
from visionlens.layers import layer_layouts, map_layout

from .archs import deit_tiny, densenet121, resnet50, swin_tiny, vit_small


@pytest.mark.parametrize(
    ("shape", "prefix", "kind", "grid", "tokens_before"),
    [
        ((40, 28, 28), None, "channels_first", (28, 28), 0),
        ((7, 7, 768), None, "channels_last", (7, 7), 0),
        ((197, 384), 1, "tokens", (14, 14), 1),
        ((198, 192), 2, "tokens", (14, 14), 2),  # class + distillation token
        ((201, 384), None, "tokens", (14, 14), 5),  # class + 4 registers, inferred
        ((196, 384), 1, "tokens", (14, 14), 0),  # the patch embedding, before the class token
        ((1000,), None, "vector", None, 0),
        ((6, 197, 64), None, "other", None, 0),  # heads x tokens x head dim
    ],
)
def test_layout_of(
    shape: tuple[int, ...], prefix: int | None, kind: str, grid: tuple[int, int] | None, tokens_before: int
) -> None:
    lay = layout_of(shape, 224, prefix)
    assert (lay.kind, lay.grid, lay.prefix) == (kind, grid, tokens_before)
    assert lay.shape == shape


def test_to_nchw_round_trip() -> None:
    t = torch.randn(2, 1 + 3 * 5, 8)  # a class token and a 3 x 5 grid (a non-square input)
    lay = MapLayout("tokens", 8, (4, 4), prefix=1, stride=16.0)
    m = lay.to_nchw(t, (48, 80))
    assert m.shape == (2, 8, 3, 5)
    assert torch.equal(m[:, :, 1, 2], t[:, 1 + 1 * 5 + 2])  # row-major patches after the class token
    assert torch.equal(lay.from_nchw(m, t), t)
    cl = MapLayout("channels_last", 8, (3, 5))
    assert torch.equal(cl.to_nchw(m.permute(0, 2, 3, 1)), m)


def test_layouts_of_models() -> None:
    vit = layer_layouts(vit_small())
    assert vit["blocks.11.norm1"].describe() == "tokens 1+4x4"
    assert vit["blocks.11.attn.q_norm"].kind == "other"
    assert vit["head"].kind == "vector"
    assert layer_layouts(deit_tiny())["blocks.0"].prefix == 2
    swin = layer_layouts(swin_tiny())
    assert swin["norm"].kind == "channels_last" and swin["layers.3"].grid == (2, 2)
    assert swin["layers.0.blocks.0.attn"].kind == "other"  # windows folded into the batch
    with pytest.raises(LayerError, match=r"'head' has output shape 10 \(vector\), not a map; .*: blocks.11.norm1, "):
        map_layout(vit_small(), "head")


def test_default_cam_layers() -> None:
    assert vl.last_spatial_layer(vit_small()) == "blocks.11.norm1"  # the class token's last mixing
    assert vl.last_spatial_layer(deit_tiny()) == "blocks.11.norm1"
    assert vl.last_spatial_layer(swin_tiny()) == "norm"
    assert vl.last_spatial_layer(resnet50()) == "layer4.2"


def _peer(model: vl.Model, x: torch.Tensor, module: nn.Module, target: int, reshape: Callable | None) -> np.ndarray:
    cam = GradCAM(model.net, [module], reshape_transform=reshape)
    cam(x, [ClassifierOutputTarget(target)] * x.shape[0])  # one target per image: it would truncate
    ag = cam.activations_and_grads
    acts, grads = ag.activations[0].numpy(), ag.gradients[0].numpy()
    weights = cam.get_cam_weights(x, [module], None, acts, grads)
    return np.maximum((weights[:, :, None, None] * acts).sum(1), 0)


def _tokens(h: int, w: int, prefix: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def reshape(t: torch.Tensor) -> torch.Tensor:  # what a pytorch-grad-cam user writes by hand
        return t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)

    return reshape


CASES = [
    ("vit", vit_small, "blocks.11.norm1", lambda n: n.blocks[-1].norm1, _tokens(4, 4, 1)),
    ("deit", deit_tiny, "blocks.11.norm1", lambda n: n.blocks[-1].norm1, _tokens(4, 4, 2)),
    ("swin-tokens", swin_tiny, "layers.3.blocks.1.norm2", lambda n: n.layers[-1].blocks[-1].norm2, _tokens(2, 2, 0)),
    ("swin-channels-last", swin_tiny, "norm", lambda n: n.norm, lambda t: t.permute(0, 3, 1, 2)),
    ("resnet", resnet50, "layer4", lambda n: n.layer4, None),
    ("densenet", densenet121, "features.denseblock4", lambda n: n.features.denseblock4, None),
]


@pytest.mark.parametrize(("name", "make", "layer", "module", "reshape"), CASES, ids=[c[0] for c in CASES])
def test_gradcam_matches_pytorch_grad_cam(
    name: str, make: Callable[[], vl.Model], layer: str, module: Callable, reshape: Callable | None
) -> None:
    model = make()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = int(model.logits(x)[0].argmax())  # a class with positive evidence somewhere
    ours = vl.gradcam(model, x, target, layer=layer, upsample=False).numpy()
    peer = _peer(model, x, module(model.net), target, reshape)
    assert ours.shape == peer.shape
    assert peer.max() > 0
    np.testing.assert_allclose(ours, peer, atol=1e-4 * float(peer.max()), rtol=0)


def test_functional_inplace_activation_does_not_overwrite_a_capture() -> None:
    # torchvision's DenseNet runs F.relu(features, inplace=True) right after features.norm5:
    # the captured norm5 output must keep its negative values (pytorch-grad-cam's hook stores
    # a tensor that shares that storage and so sees the ReLU'd values)
    model = densenet121()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model.net.features(x)  # a Sequential ending at norm5: nothing in place after it
        with vl.Probe(model.net, ["features.norm5"]) as probe:
            model.net(x)  # the whole network: the in-place ReLU runs after the capture
            acts = probe["features.norm5"]
    assert float(acts.min()) < 0
    torch.testing.assert_close(acts, reference)


def test_token_receptive_fields() -> None:
    # a token sees its own patch until the first attention has mixed them, then every patch
    rows = {i.name: i for i in vl.layer_table(vl.load_model("digits_vit"))}
    assert rows["patch_embed"].field is not None and rows["patch_embed"].field.size == (4, 4)
    assert rows["blocks.0.attn.qkv"].field is not None  # computed per token, before the mixing
    assert rows["blocks.0.attn"].field is None and rows["blocks.3.norm1"].field is None
