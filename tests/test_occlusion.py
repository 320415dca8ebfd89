"""Occlusion: equal to Captum on every architecture of the matrix, the incremental engine equal
to whole copies, windows of several images sharing batches, the approximate mode, streaming."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from captum.attr import Occlusion

import visionlens as vl
from visionlens.attribution._occlusion_engine import Engine
from visionlens.models import Model

from . import archs

# the package's `occlusion` is the function
occ = importlib.import_module("visionlens.attribution.occlusion")
engine_module = importlib.import_module("visionlens.attribution._occlusion_engine")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _mobilenet() -> Model:
    model = archs._model(lambda: torchvision.models.mobilenet_v3_large(num_classes=10), "mobilenet_v3_large")
    # with random BatchNorm statistics its output does not depend on the input: use batch ones
    for m in model.net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    torch.manual_seed(1)
    with torch.no_grad():
        model.net.train()(torch.randn(8, 3, archs.SIZE, archs.SIZE))
    model.net.eval()
    return model


def _lite0() -> Model:
    make = lambda: timm.create_model("tf_efficientnet_lite0", num_classes=10)  # noqa: E731
    return archs._model(make, "efficientnet_lite0")


MATRIX: dict[str, Callable[[], Model]] = {**archs.MATRIX, "mobilenet_v3_large": _mobilenet, "lite0": _lite0}


def _captum(model: Model, x: torch.Tensor, target: int, window: int, stride: int, base: float = 0.0) -> torch.Tensor:
    with torch.no_grad():
        return Occlusion(lambda i: model.net(i).softmax(-1)).attribute(
            x,
            target=target,
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=base,
            perturbations_per_eval=16,
        )[:, 0]


def _image(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(1, 3, archs.SIZE, archs.SIZE)


SLOW = {"convnext_tiny", "densenet121", "swin_tiny", "vgg16", "resnet50", "vit_small"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(MATRIX)])
def test_matches_captum_on_the_matrix(name: str) -> None:
    model = MATRIX[name]()
    x = _image()
    target = int(model.net(x).argmax())
    ours = vl.occlusion(model, x, target, window=16, stride=8)
    theirs = _captum(model, x, target, 16, 8)
    assert float(theirs.abs().max()) > 0
    assert (ours - theirs).abs().max() <= 1e-4 * float(theirs.abs().max())


@pytest.mark.parametrize(
    "name",
    [
        "resnet50",
        "mobilenet_v3_large",
        "lite0",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("vgg16", "convnext_tiny")),
    ],
)
def test_incremental_engine_equals_whole_copies(name: str) -> None:
    model = MATRIX[name]()
    x = _image(1)
    engine = Engine(model.net, x, 8, 8, min_saving=0.0)  # every plan, however little it saves
    assert engine.segments, "no incremental plan"
    wins = occ._windows(archs.SIZE, archs.SIZE, 8, 8)[::3]
    owners = torch.zeros(len(wins), dtype=torch.long)
    base = torch.zeros_like(x)
    with torch.inference_mode():
        clean = engine.clean_maps(x)[1]
        a = engine.plain(x, base, wins, owners)
        b = engine.incremental(x, base, wins, owners, clean)
    assert (a - b).abs().max() <= 1e-4 * float(a.abs().max())
    assert set(engine.profile) >= {"whole network", f"{engine.segments[-1].b} -> output"}


def test_a_plan_is_tried_only_where_it_can_pay() -> None:
    """ConvNeXt's 7x7 depthwise blocks spread a window over the map within the first stage, so
    its only cut (the stem) saves about nothing: no plan, no trial batches run both ways. On a
    ResNet the cuts reach layer2 and save a good part of each pass."""
    x = torch.randn(1, 3, 224, 224)
    convnext = Engine(timm.create_model("convnext_atto", num_classes=10).eval(), x, 16, 8)
    assert convnext.segments == [] and convnext.saving < 0.15
    resnet = Engine(torchvision.models.resnet18(num_classes=10).eval(), x, 16, 8)
    assert resnet.segments and resnet.saving >= 0.15


def test_incremental_mode_is_exact_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(occ, "_PLAN_FROM", 0)
    monkeypatch.setattr(engine_module, "_MIN_SAVING", 0.0)  # a tiny image: any plan, however little it saves
    model = MATRIX["lite0"]()
    x = torch.cat([_image(2), _image(3)])
    stats: dict = {}
    fast, _ = vl.occlusion_windows(model, x, 3, window=8, stride=4, baseline="blur", batch_size=16, stats=stats)
    slow, _ = vl.occlusion_windows(model, x, 3, window=8, stride=4, baseline="blur", incremental=False)
    assert stats["cuts"] and stats["windows"] == 2 * 15 * 15 and stats["forwards"] == 2 * 15 * 15
    assert "exact" in stats["why"] or "faster" in stats["why"]
    assert (fast - slow).abs().max() <= 1e-4 * float(slow.abs().max())


def test_windows_of_several_images_share_batches() -> None:
    model = MATRIX["resnet50"]()
    x = torch.cat([_image(4), _image(5), _image(6)])
    both, bound = vl.occlusion_windows(model, x, [1, 2, 3], window=16, stride=16, batch_size=5)
    one, _ = vl.occlusion_windows(model, x[1:2], 2, window=16, stride=16)
    assert bound.classes.tolist() == [1, 2, 3]
    assert (both[1] - one[0]).abs().max() <= 1e-4 * float(one.abs().max())


def test_approximate_is_exact_where_measured_and_close_elsewhere() -> None:
    model = MATRIX["lite0"]()
    x = _image(7)
    exact, _ = vl.occlusion_windows(model, x, 0, window=8, stride=4)
    stats: dict = {}
    approx, _ = vl.occlusion_windows(model, x, 0, window=8, stride=4, approximate=True, stats=stats)
    assert stats["forwards"] < 0.5 * stats["windows"]
    same = (approx - exact).abs() <= 1e-4 * float(exact.abs().max())
    assert int(same.sum()) >= stats["forwards"]  # the measured windows are exact
    assert torch.corrcoef(torch.stack([approx.flatten(), exact.flatten()]))[0, 1] > 0.5


def test_approximate_finds_the_exact_top_region_on_the_bundled_model() -> None:
    """Where the map is highest the approximate mode measures every window: on chelsea its
    top-10% pixels agree with the exact map's (IoU >= 0.8), from at most 45% of the passes."""
    model = vl.load_model()
    x = model.prepare("chelsea")
    exact = vl.occlusion(model, x, window=32, stride=16)[0]
    stats: dict = {}
    approx = vl.occlusion(model, x, window=32, stride=16, approximate=True, stats=stats)[0]
    assert stats["forwards"] <= 0.45 * stats["windows"]
    k = exact.numel() // 10
    top_a, top_e = set(approx.flatten().topk(k).indices.tolist()), set(exact.flatten().topk(k).indices.tolist())
    assert len(top_a & top_e) / len(top_a | top_e) >= 0.8
    peak = exact.flatten().argmax()
    assert torch.isclose(approx.flatten()[peak], exact.flatten()[peak], rtol=1e-4)  # measured, not estimated


def test_approximate_with_a_stride_past_the_image() -> None:
    """A stride larger than the image places windows that start past its border."""
    model = MATRIX["lite0"]()
    x = _image(8)
    exact = vl.occlusion(model, x, 0, window=8, stride=100)
    approx = vl.occlusion(model, x, 0, window=8, stride=100, approximate=True)
    assert torch.allclose(approx, exact, atol=1e-6)  # two windows: both measured


def test_stream_labels_each_image_and_matches_single_calls() -> None:
    model = MATRIX["resnet50"]()
    images = [vl.sample_image(n) for n in ("chelsea", "coffee", "rocket")]
    got = list(occ.occlusion_stream(model, images, window=32, stride=16, images_per_batch=2, progress=False))
    assert len(got) == 3 and got[2][2].shape == (archs.SIZE, archs.SIZE)
    x = model.prepare(images[2])
    one = vl.occlusion(model, x, window=32, stride=16)[0]
    assert (got[2][2] - one).abs().max() <= 1e-5 * max(1e-12, float(one.abs().max()))
    assert got[2][3].startswith("class ")


@pytest.mark.parametrize("geometry", [(224, 224, 16, 8), (50, 37, 7, 3), (33, 20, 5, 5), (10, 10, 2, 5)])
def test_spread_windows_is_the_mean_of_the_covering_windows(geometry: tuple[int, int, int, int]) -> None:
    """Overhanging last windows, windows that are no multiple of the stride, gaps between them."""
    h, w, window, stride = geometry
    ys, xs = occ.window_starts(h, window, stride), occ.window_starts(w, window, stride)
    drops = torch.randn(2, len(ys), len(xs))
    got = occ.spread_windows(drops, (h, w), window, stride)
    for y, x in [(0, 0), (h - 1, w - 1), (h // 2, w // 3), (h - 1, 0)]:
        rows = [i for i, y0 in enumerate(ys) if y0 <= y < y0 + window]
        cover = [(i, j) for i in rows for j, x0 in enumerate(xs) if x0 <= x < x0 + window]
        want = torch.stack([drops[:, i, j] for i, j in cover]).mean(0) if cover else torch.zeros(2)
        assert torch.allclose(got[:, y, x], want, atol=1e-6)


def test_bad_arguments() -> None:
    model = MATRIX["resnet50"]()
    with pytest.raises(vl.errors.ArgumentError, match="`batch_size`"):
        vl.occlusion(model, _image(), window=16, batch_size=0)
    with pytest.raises(vl.errors.ArgumentError, match="`images_per_batch`"):
        list(occ.occlusion_stream(model, ["chelsea"], images_per_batch=0))


def test_cli_occludes_a_folder(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from visionlens.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        vl.sample_image(name).resize((80, 80)).save(photos / f"{name}.jpg")
    with pytest.raises(SystemExit) as e:
        main(
            [
                "occlusion",
                str(photos),
                "-o",
                str(tmp_path / "out"),
                "--model",
                "tests.archs:resnet50",
                "--window",
                "32",
                "--stride",
                "16",
                "--approx",
            ]
        )
    assert int(e.value.code or 0) == 0, capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chelsea-occlusion.png", "coffee-occlusion.png"]


def test_cli_profile(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from visionlens.cli import main

    with pytest.raises(SystemExit) as e:
        main(
            [
                "occlusion",
                "chelsea",
                "--model",
                "tests.archs:vgg16",
                "--window",
                "32",
                "--stride",
                "16",
                "--profile",
                "-o",
                str(tmp_path / "o.png"),
            ]
        )
    out = capsys.readouterr().out
    assert int(e.value.code or 0) == 0 and "whole network" in out and "windows run" in out
