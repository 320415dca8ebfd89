from __future__ import annotations

import pytest
import torch
from torch import nn

import visionlens as vl
from visionlens.errors import LayerError
from visionlens.probe import Probe
from visionlens.tracing import forward_until, resume_from, trace

from .conftest import ReLUNet, seeded


def test_unknown_layer_lists_closest(bundled: vl.Model) -> None:
    with pytest.raises(LayerError, match=r"blocks\.3\.0"):
        vl.resolve_layer(bundled.net, "blocks.3.O")


def test_probe_restores_model_even_on_error() -> None:
    net = seeded(ReLUNet(inplace=True)).train()
    net.fc.weight.requires_grad_(False)
    before = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RuntimeError, match="boom"), Probe(net, ["features.1"], backward_rule="guided"):
        assert not net.training and net.features[1].inplace is False
        raise RuntimeError("boom")
    assert net.training
    assert [p.requires_grad for p in net.parameters()] == before
    assert all(m.inplace for m in net.modules() if hasattr(m, "inplace"))
    assert not any(m._forward_hooks for m in net.modules())


def test_inplace_relu_does_not_corrupt_capture() -> None:
    net = seeded(ReLUNet(inplace=True))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad(), Probe(net, ["features.0"]) as probe:
        net(x)
        captured = probe["features.0"]
    assert float(captured.min()) < 0  # the pre-ReLU conv output, not overwritten by the ReLU


def test_receptive_fields_of_known_stack() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 5, padding=2),
    )
    rf = vl.receptive_fields(net, 64, ["0", "2", "3", "4"])
    assert rf["0"].size == (3, 3) and rf["0"].stride == (1, 1)
    assert rf["2"].size == (5, 5) and rf["2"].stride == (2, 2)
    assert rf["3"].size == (7, 7) and rf["3"].stride == (4, 4)
    assert rf["4"].size == (7 + 4 * 4, 7 + 4 * 4)


def test_bundled_receptive_fields(bundled: vl.Model) -> None:
    rf = vl.receptive_fields(bundled.net, 224, ["conv_stem", "blocks.2", "blocks.3"])
    assert rf["conv_stem"].size == (3, 3)
    assert rf["blocks.2"].size == (67, 67) and rf["blocks.2"].stride == (8, 8)
    assert rf["blocks.3"].stride == (16, 16)


@pytest.mark.parametrize("arch", ["resnet18", "convnext_atto"])
def test_fields_measured_small_first_equal_those_measured_at_full_size(arch: str) -> None:
    """Fields that fit are measured at 64 and 128 px before 224 (a backward pass costs the
    input's area); every layer's field, the clipped ones included, must equal the field
    measured at 224 px alone. ConvNeXt's LayerNorms pass a gradient (channel-varied
    weights in the positive copy)."""
    import timm
    import torchvision

    from visionlens import fields

    net = (torchvision.models.resnet18() if arch == "resnet18" else timm.create_model(arch)).eval()
    tr = trace(net, torch.zeros(1, 3, 224, 224))
    names = [n for n in tr.order if n and len(tr.shapes.get(n, ())) == 3]
    stepped = dict(fields.each_receptive_field(net, 224, names))
    whole = dict(fields._each_field(fields._positive_copy(net), (224, 224), names))
    assert stepped == whole
    assert sum(f is not None and not f.clipped for f in whole.values()) >= 8
    assert any(f is not None and f.clipped for f in whole.values())


def test_fields_taken_from_an_earlier_layer_equal_those_measured_alone() -> None:
    """A layer whose output is an earlier layer's tensor, or a norm, activation or 1x1
    convolution on one, takes that layer's field without a backward pass of its own: every
    field must equal the one measured with that layer alone (inplace ReLUs, BatchNorms and
    1x1 convolutions of a ResNet bottleneck; GELU, Hardswish and a strided 1x1 that is not
    pointwise in a small net)."""
    import torchvision

    from visionlens import fields

    small = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.GELU(), nn.Conv2d(4, 4, 1), nn.Hardswish(),
        nn.Conv2d(4, 4, 1, stride=2), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1), nn.Identity(),
    )  # fmt: skip
    r = torchvision.models.resnet50()
    for net in (small.eval(), nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1).eval()):
        tr = trace(net, torch.zeros(1, 3, 32, 32))
        names = [n for n in tr.order if n and len(tr.shapes.get(n, ())) == 3]
        pos = fields._positive_copy(net)
        together = dict(fields._each_field(pos, (32, 32), names))
        alone = {n: dict(fields._each_field(pos, (32, 32), [n]))[n] for n in names}
        assert together == alone and sum(f is not None for f in alone.values()) >= 8


def test_layer_table(bundled: vl.Model) -> None:
    table = {info.name: info for info in vl.layer_table(bundled)}
    assert table["blocks.2"].shape == (40, 28, 28)
    assert table["classifier"].shape == (1000,) and table["classifier"].field is None
    assert table["blocks.1"].field is not None and table["blocks.1"].field.size == (19, 19)


def test_resume_from_continues_exactly() -> None:
    net = seeded(ReLUNet())
    x = torch.randn(3, 3, 16, 16)
    tr = trace(net, x[:1])
    mid = forward_until(net, x, "features.2")
    with torch.no_grad(), resume_from(net, tr, "features.2", mid):
        out = net(torch.empty(3, 3, 16, 16))
    assert torch.allclose(out, net(x), atol=1e-6)
    assert "forward" not in net.features[0].__dict__
