"""The inference copy behind occlusion, Score-CAM, Ablation-CAM, deletion/insertion and ROAD:
the same outputs as the network, BatchNorm folded, a fallback for networks that refuse
channels-last inputs, and a copy made again whenever the network changed."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torchvision
from torch import nn

from visionlens.attribution._fast import FastForward, inference_copy, prune_last_block

from . import archs


def _calibrated_resnet() -> nn.Module:
    """A random ResNet-18 whose BatchNorm statistics are not the identity (so folding shows)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 3, 64, 64))
    return net.eval()


def test_copy_folds_batchnorm_and_gives_the_same_outputs() -> None:
    net = _calibrated_resnet()
    x = torch.randn(3, 3, 64, 64)
    fast = inference_copy(net, x[:1])
    assert fast.bn1.forward(torch.full((2,), 7.0)).tolist() == [7.0, 7.0]  # folded: identity
    assert fast.conv1.bias is not None and net.conv1.bias is None  # the network itself is untouched
    with torch.no_grad():
        ref = net(x)
        out = FastForward(net, x[:1])(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_dict_outputs_and_the_callers_mode_are_kept() -> None:
    torch.manual_seed(0)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(num_classes=3, weights_backbone=None).train()
    x = torch.randn(2, 3, 64, 64)
    run = FastForward(net, x[:1])
    assert net.training  # the copy is in eval mode, the caller's network stays as it was
    with torch.no_grad():
        ref = net.eval()(x)["out"]
        out = run(x)["out"]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


class _Flattens(nn.Module):
    """A network that `.view`s a convolution's output: channels-last inputs make it fail."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return self.fc(y.view(y.shape[0], -1))


def test_a_network_refusing_channels_last_gets_contiguous_batches() -> None:
    torch.manual_seed(0)
    net = _Flattens().eval()
    x = torch.randn(5, 3, 8, 8)
    run = FastForward(net, x[:1])
    with torch.no_grad():
        out = run(x)
        assert not run.channels_last
        torch.testing.assert_close(out, net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(run(x), net(x), rtol=1e-5, atol=1e-5)


def test_the_copy_is_made_again_when_the_network_changes() -> None:
    net = _calibrated_resnet()
    x = torch.randn(2, 3, 64, 64)
    first = FastForward.of(net, x[:1])
    assert FastForward.of(net, x[:1]) is first  # unchanged: reused
    assert FastForward.of(net, x[:1, :, :32]) is not first  # another input size: a new copy
    first = FastForward.of(net, x[:1])
    with torch.no_grad():
        net.fc.weight.add_(1.0)  # in place: the version counter moves
    second = FastForward.of(net, x[:1])
    assert second is not first
    net.fc.weight.data.mul_(3.0)  # through .data: the counter does not move, the sum does
    third = FastForward.of(net, x[:1])
    assert third is not second
    with torch.no_grad():
        torch.testing.assert_close(third(x), net(x), rtol=1e-4, atol=1e-4 * float(net(x).abs().max()))


@pytest.mark.parametrize("name", ["vit_small", "deit_tiny"])
def test_a_vit_whose_head_reads_the_prefix_tokens_runs_its_last_block_for_them_alone(name: str) -> None:
    """The last block's output is (B, prefix tokens, C) in the copy (ViT: the class token;
    DeiT distilled: class and distillation tokens), and the outputs are the network's."""
    net = archs.MATRIX[name]().net
    x = torch.randn(3, 3, archs.SIZE, archs.SIZE)
    fast = inference_copy(net, x[:1])
    seen: list[tuple[int, ...]] = []
    fast.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        ref, out = net(x), fast(x)
    assert seen == [(3, net.num_prefix_tokens, net.embed_dim)]
    assert net.num_prefix_tokens == (2 if name == "deit_tiny" else 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_a_vit_that_pools_every_token_keeps_its_last_block_whole() -> None:
    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch16_224", num_classes=10, img_size=32, global_pool="avg").eval()
    assert not prune_last_block(copy.deepcopy(net))
    fast = inference_copy(net, torch.randn(1, 3, 32, 32))
    assert "forward" not in fast.blocks[-1].__dict__


class _Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_a_pruned_block_that_changes_the_output_is_put_back() -> None:
    """A block that does what the pruned forward does not (here its attention weights doubled
    where timm's plain path applies attention dropout): pruned, the output differs, so the copy
    keeps the block's own forward."""
    net = copy.deepcopy(archs.MATRIX["vit_small"]().net)
    net.blocks[-1].attn.fused_attn = False
    net.blocks[-1].attn.attn_drop = _Double()
    fast = inference_copy(net, torch.randn(1, 3, archs.SIZE, archs.SIZE))
    assert "forward" not in fast.blocks[-1].__dict__


class _Features(nn.Module):
    """A network around a ViT that reads every token of its last block (a dense head)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)[:, 1:].mean(1)


def test_a_vit_inside_another_network_is_pruned_only_where_its_other_tokens_go_unread() -> None:
    vit = archs.MATRIX["vit_small"]().net
    x = torch.randn(2, 3, archs.SIZE, archs.SIZE)
    wrapped = inference_copy(nn.Sequential(vit, nn.Softmax(-1)), x[:1])  # reads the logits alone
    assert "forward" in vars(wrapped[0].blocks[-1])
    dense = _Features(vit).eval()
    fast = inference_copy(dense, x[:1])  # pruned, its forward fails: the block is put back
    assert "forward" not in vars(fast.vit.blocks[-1])
    with torch.no_grad():
        torch.testing.assert_close(fast(x), dense(x), rtol=1e-4, atol=1e-6)
