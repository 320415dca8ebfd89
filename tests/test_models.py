from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

import visionlens as vl
from visionlens.errors import ModelError, TargetError

from .conftest import ReLUNet, seeded


@pytest.mark.parametrize(
    ("image", "classes"),
    [("chelsea", range(281, 286)), ("coffee", [967]), ("rocket", [657]), ("motorcycle", [665]), ("flower", [985])],
)
def test_bundled_model_is_imagenet_pretrained(bundled: vl.Model, image: str, classes: range) -> None:
    probs, idx = vl.classify(bundled, bundled.prepare(image), k=1)
    assert int(idx[0, 0]) in classes
    assert float(probs[0, 0]) > 0.25


def test_labels_and_class_names(bundled: vl.Model) -> None:
    assert len(bundled.labels) == 1000
    assert bundled.class_index("tiger cat") == 282
    assert bundled.class_index("goldfish") == 1
    assert bundled.class_index("967") == 967
    with pytest.raises(TargetError, match="out of range"):
        bundled.class_index(1000)
    with pytest.raises(TargetError, match="did you mean"):
        bundled.class_index("tigger cat")


def test_preprocessing_round_trip(bundled: vl.Model) -> None:
    x = bundled.prepare("coffee")
    assert x.shape == (1, 3, 224, 224)
    img = bundled.to_image(x)
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert torch.allclose(bundled.preprocessing.normalize(img), x, atol=1e-5)


def test_torchvision_spec_with_local_weights(tmp_path: Path) -> None:
    import torchvision

    net = torchvision.models.get_model("resnet18", weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    model = vl.load_model("torchvision:resnet18", weights=tmp_path / "r18.pth")
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model.logits(x), net(x), atol=1e-5)
    assert model.preprocessing.input_size == 224 and model.labels[1].startswith("goldfish")


def test_timm_spec_with_local_weights(tmp_path: Path) -> None:
    import timm

    net = timm.create_model("resnet10t", pretrained=False, num_classes=7).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pth")
    with pytest.raises(ModelError, match="do not fit"):
        vl.load_model("timm:resnet10t", weights=tmp_path / "w.pth")  # 1000 classes vs 7


def test_timm_weights_load_from_the_hub_cache_at_once_without_a_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, huggingface_hub would retry every request for about 50 s before reading its
    cache: with the hub unreachable, weights in the cache load without a request, and
    weights not there fail at once with a one-line reason."""
    import socket

    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from visionlens import loading

    lookups: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        lookups.append(args[0])
        raise OSError("no network in this test")

    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="cannot be reached, nor are they cached"):
        vl.load_model("timm:resnet10t")
    torch.manual_seed(0)
    ref = timm.create_model("resnet10t").state_dict()
    repo, rev = tmp_path / "models--timm--resnet10t.c3_in1k", "0" * 40
    (repo / "snapshots" / rev).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    save_file({k: v.contiguous() for k, v in ref.items()}, repo / "snapshots" / rev / "model.safetensors")
    got = vl.load_model("timm:resnet10t").net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.items())
    assert not lookups and not constants.HF_HUB_OFFLINE  # no request made; offline mode undone


def test_torchscript_archive(tmp_path: Path) -> None:
    net = seeded(ReLUNet())
    torch.jit.trace(net, torch.randn(1, 3, 32, 32)).save(str(tmp_path / "net.ts"))
    model = vl.load_model(str(tmp_path / "net.ts"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.logits(x), net(x), atol=1e-6)


def test_factory_spec_with_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def small():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    model = vl.load_model("mynets:small", weights=tmp_path / "w.pt")
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(model.logits(x), ref.eval()(x))
    assert model.labels == ["class 0", "class 1", "class 2"]


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {os.environ['VL_PWNED']}",))


def test_malicious_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("VL_PWNED", str(marker))
    torch.save({"model": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="`trust_checkpoint`"):
        vl.load_model(str(tmp_path / "evil.pt"))
    with pytest.raises(ModelError, match="`trust_checkpoint`"):
        vl.load_model("timm:resnet10t", weights=tmp_path / "evil.pt")
    assert not marker.exists()


def test_whole_model_pickle_needs_trust(tmp_path: Path) -> None:
    net = seeded(ReLUNet())
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(ModelError, match="`trust_checkpoint`"):
        vl.load_model(str(tmp_path / "whole.pt"))
    model = vl.load_model(str(tmp_path / "whole.pt"), trust_checkpoint=True)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(model.logits(x), net(x))


@pytest.mark.parametrize("spec", ["resnet50", "torchvision:resnet_xx", "timm:no_such_net", "nosuchmodule:make"])
def test_unknown_models(spec: str) -> None:
    with pytest.raises(ModelError):
        vl.load_model(spec)


def test_garbage_weights_file(tmp_path: Path) -> None:
    (tmp_path / "w.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable"):
        vl.load_model("timm:resnet10t", weights=tmp_path / "w.pth")
