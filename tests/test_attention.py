"""Attention weights, per-head attention maps and attention rollout, against straightforward
references: timm's non-fused attention path (weights caught at `attn_drop`) and
`nn.MultiheadAttention(need_weights=True)` for torchvision's ViT."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionlens as vl
from visionlens.attribution import attention_layers, attention_maps, attention_rollout, attention_weights
from visionlens.errors import ArgumentError, LayerError

from .conftest import ReLUNet


def _vit(**kwargs: object) -> nn.Module:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10, **kwargs)
    # random, not near-zero, weights so attention is far from uniform
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 2.0)
            elif name.endswith("qkv.weight"):
                p.normal_(0, 0.06)
    return net.eval()


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    return _vit()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(2, 3, 64, 64)


def reference_weights(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's own non-fused attention weights (caught at `attn_drop`), each block fed the input
    it gets in the model's ordinary (fused) forward pass."""
    inputs: list[torch.Tensor] = []
    blocks = list(net.blocks)
    handles = [b.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for b in blocks]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    caught: list[torch.Tensor] = []
    for b, inp in zip(blocks, inputs, strict=True):
        handle = b.attn.attn_drop.register_forward_hook(lambda m, i, o: caught.append(o.detach()))
        b.attn.fused_attn = False
        try:
            with torch.no_grad():
                b.attn(inp)
        finally:
            b.attn.fused_attn = True
            handle.remove()
    return caught


def reference_rollout(weights: list[torch.Tensor], prefix: int = 1) -> torch.Tensor:
    """Abnar & Zuidema's rollout written out plainly, per image: (B, T - prefix)."""
    out = []
    for b in range(weights[0].shape[0]):
        r = torch.eye(weights[0].shape[-1], dtype=torch.float64)
        for w in weights:
            a = 0.5 * w[b].double().mean(0) + 0.5 * torch.eye(w.shape[-1], dtype=torch.float64)
            a = a / a.sum(-1, keepdim=True)
            r = a @ r
        out.append(r[0, prefix:])
    return torch.stack(out).float()


def test_weights_equal_timm_non_fused_path(vit: nn.Module, x64: torch.Tensor) -> None:
    assert vit.blocks[0].attn.fused_attn  # the model under test runs fused attention
    ref = reference_weights(vit, x64)
    assert len(ref) == 12
    assert attention_layers(vit) == [f"blocks.{i}.attn" for i in range(12)]
    for i in (0, 5, 11):
        w = attention_weights(vit, x64, block=i)
        assert w.shape == (2, 3, 17, 17)
        torch.testing.assert_close(w, ref[i], atol=1e-5, rtol=0)
    # weights far from uniform, so the comparison means something
    assert float(ref[11].amax()) > 0.5
    assert torch.equal(attention_weights(vit, x64, block="blocks.11"), attention_weights(vit, x64, block=-1))


def test_weights_with_qk_norm() -> None:
    net = _vit(qk_norm=True)
    x = torch.randn(1, 3, 64, 64)
    ref = reference_weights(net, x)
    torch.testing.assert_close(attention_weights(net, x, block=2), ref[2], atol=1e-5, rtol=0)


def test_model_restored(vit: nn.Module, x64: torch.Tensor) -> None:
    vit.train()
    try:
        attention_rollout(vit, x64)
        assert vit.training
        assert all(b.attn.fused_attn for b in vit.blocks)
        assert not any(m._forward_pre_hooks for m in vit.modules())
        assert all(p.requires_grad for p in vit.parameters())
    finally:
        vit.eval()


def test_maps_are_rows_of_the_weights(vit: nn.Module, x64: torch.Tensor) -> None:
    w = attention_weights(vit, x64, block=4)
    cls = attention_maps(vit, x64, block=4, upsample=False)
    assert cls.shape == (2, 3, 4, 4)
    torch.testing.assert_close(cls, w[:, :, 0, 1:].reshape(2, 3, 4, 4))
    patch = attention_maps(vit, x64, block=4, query=(1, 2), upsample=False)
    torch.testing.assert_close(patch, w[:, :, 1 + 1 * 4 + 2, 1:].reshape(2, 3, 4, 4))
    torch.testing.assert_close(attention_maps(vit, x64, block=4, query=7, upsample=False), patch)
    up = attention_maps(vit, x64, block=4)
    assert up.shape == (2, 3, 64, 64)
    torch.testing.assert_close(up, F.interpolate(cls, size=(64, 64), mode="bilinear", align_corners=False))


def test_rollout_matches_reference(vit: nn.Module, x64: torch.Tensor) -> None:
    ref = reference_rollout(reference_weights(vit, x64)).view(2, 4, 4)
    grid = attention_rollout(vit, x64, upsample=False)
    assert grid.shape == (2, 4, 4)
    torch.testing.assert_close(grid, ref, atol=1e-5, rtol=1e-4)
    full = attention_rollout(vit, x64)
    assert full.shape == (2, 64, 64) and float(full.min()) >= 0
    torch.testing.assert_close(full, F.interpolate(grid[:, None], size=(64, 64), mode="bilinear")[:, 0])
    # works from inside inference mode, as other attribution methods do
    with torch.inference_mode():
        torch.testing.assert_close(attention_rollout(vit, x64, upsample=False), grid)
    assert not torch.allclose(attention_rollout(vit, x64, head_fusion="max", upsample=False), grid)


def test_torchvision_vit_matches_multihead_attention() -> None:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    names = attention_layers(net)
    assert names == ["encoder.layers.encoder_layer_0.self_attention", "encoder.layers.encoder_layer_1.self_attention"]
    inputs: list[torch.Tensor] = []
    handle = net.encoder.layers[1].ln_1.register_forward_hook(lambda m, i, o: inputs.append(o))
    with torch.no_grad():
        net(x)
        handle.remove()
        _, ref = net.encoder.layers[1].self_attention(*inputs * 3, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(attention_weights(net, x, block=1), ref, atol=1e-5, rtol=0)
    assert attention_maps(net, x, block=1).shape == (2, 2, 32, 32)
    assert attention_rollout(net, x, upsample=False).shape == (2, 4, 4)


def test_bad_use_is_one_line() -> None:
    cnn = ReLUNet().eval()
    x = torch.randn(1, 3, 32, 32)
    for call in (lambda: attention_rollout(cnn, x), lambda: attention_maps(cnn, x)):
        with pytest.raises(LayerError, match="no self-attention layers") as e:
            call()
        assert "\n" not in str(e.value)
    vit = _vit()
    x64 = torch.randn(1, 3, 64, 64)
    with pytest.raises(ArgumentError, match=r"block 12 is out of range.*12 attention blocks \(0\.\.11\)"):
        attention_maps(vit, x64, block=12)
    with pytest.raises(LayerError, match="did you mean"):
        attention_maps(vit, x64, block="blocks.1.atn")
    with pytest.raises(ArgumentError, match="outside the 4x4 patch grid"):
        attention_maps(vit, x64, query=(4, 0))
    with pytest.raises(ArgumentError, match="out of range"):
        attention_maps(vit, x64, query=17)
    with pytest.raises(ArgumentError, match="head_fusion"):
        attention_rollout(vit, x64, head_fusion="median")  # type: ignore[arg-type]
    assert isinstance(ArgumentError("x"), vl.VisionlensError)


def test_windowed_attention_is_refused() -> None:
    class WindowAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.num_heads, self.scale = 2, 0.5
            self.relative_position_bias_table = nn.Parameter(torch.zeros(4, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, 4)
            self.attn = WindowAttention()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(self.embed(x).flatten(2).transpose(1, 2)).mean(1)

    with pytest.raises(LayerError, match="relative_position_bias_table"):
        attention_rollout(Net(), torch.randn(1, 3, 16, 16))
