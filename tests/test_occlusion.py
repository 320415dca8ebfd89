"""Occlusion: equal to Captum on every architecture of the matrix, the incremental engine equal
to whole copies, windows of several images sharing batches, the approximate mode, streaming."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterator

import pytest
import timm
import torch
import torchvision
from captum.attr import Occlusion
from torch import nn

import visionlens as vl
from visionlens.attribution._occlusion_engine import Engine, all_windows
from visionlens.models import Model

from . import archs
from .devices import DEVICES, on

# the package's `occlusion` is the function
occ = importlib.import_module("visionlens.attribution.occlusion")
engine_module = importlib.import_module("visionlens.attribution._occlusion_engine")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_tf32() -> Iterator[None]:
    """On CUDA, float32 convolutions without TF32 (cuDNN's default rounds their inputs to 10
    bits of mantissa): the comparisons below are at 1e-4 of the map."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(MATRIX)])
def test_matches_captum_on_the_matrix(name: str, device: str) -> None:
    model = on(MATRIX[name](), device)
    x = _image().to(device)
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
        "swin_tiny",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("vgg16", "convnext_tiny")),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_incremental_engine_equals_whole_copies(name: str, device: str) -> None:
    model = on(MATRIX[name](), device)
    x = _image(1).to(device)
    engine = Engine(model.net, x, 8, 8, min_saving=0.0)  # every plan, however little it saves
    assert engine.cuts, "no incremental plan"
    wins = all_windows((archs.SIZE, archs.SIZE), 8, 8)[::3].to(device)
    owners = torch.zeros(len(wins), dtype=torch.long, device=device)
    base = torch.zeros_like(x)
    with torch.inference_mode():
        clean = engine.clean_maps(x)[1]
        a = engine.plain(x, base, wins, owners)
        b = engine.incremental(x, base, wins, owners, clean)
    assert (a - b).abs().max() <= 1e-4 * float(a.abs().max())
    assert set(engine.profile) >= {"whole network", f"{engine.cuts[-1]} -> output"}


def _torchvision_swin() -> Model:
    """torchvision's Swin-T layout, small: windows of 2 tokens (shifted by 1) on 64 px."""
    make = lambda: torchvision.models.swin_transformer.SwinTransformer(  # noqa: E731
        patch_size=[4, 4], embed_dim=24, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=[2, 2], num_classes=10
    )
    return archs._model(make, "swin_torchvision")


def _swin_v2() -> Model:
    """timm's Swin V2, small; its post-attention norms start at zero (each block the
    identity), so they get random weights here."""

    def make() -> nn.Module:
        net = timm.create_model("swinv2_tiny_window8_256", img_size=archs.SIZE, window_size=2, num_classes=10)
        with torch.no_grad():
            for name, m in net.named_modules():
                if name.endswith(("norm1", "norm2")) and isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
        return net

    return archs._model(make, "swinv2_tiny")


@pytest.mark.parametrize(
    "lib, shifted",
    [
        ("timm", ("layers.0.blocks.1", "layers.1.downsample")),
        ("timm-v2", ("layers.0.blocks.1", "layers.1.downsample")),
        ("torchvision", ("features.1.1", "features.2")),
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_swin_blocks_recompute_only_the_attention_windows_a_window_changes(
    lib: str, shifted: tuple[str, str], device: str
) -> None:
    """Windows that straddle token and attention-window borders, two images in one batch: the
    plan's scores equal whole copies', through shifted blocks (their cyclic shift and mask)
    and patch merging, for timm's Swin (V1 and V2) and torchvision's."""
    model = on({"timm": MATRIX["swin_tiny"], "timm-v2": _swin_v2, "torchvision": _torchvision_swin}[lib](), device)
    x = torch.cat([_image(7), _image(8)]).to(device)
    engine = Engine(model.net, x[:1], 12, 4, min_saving=0.0)
    assert engine.windows is not None and engine.segments == []
    assert set(shifted) <= set(engine.cuts)
    assert engine.windows.steps[engine.cuts.index(shifted[0])].mask is not None  # a shifted block
    wins = all_windows((archs.SIZE, archs.SIZE), 12, 4)[::5].to(device)
    owners = torch.arange(len(wins), device=device) % 2
    base = torch.zeros_like(x)
    with torch.inference_mode():
        out, clean = engine.clean_maps(x)
        a = engine.plain(x, base, wins, owners)
        b = engine.incremental(x, base, wins, owners, clean)
    assert (a - out[owners]).abs().amax(-1).min() > 1e-3  # every window changes the output
    assert (a - b).abs().max() <= 1e-5 * float(a.abs().max())


class _Half(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 2


def test_a_swin_block_with_other_internals_ends_the_plan() -> None:
    """A block whose forward does what the window-by-window recomputation does not (here its
    MLP branch halved, as a layer scale would) is checked out at planning: the plan stops
    before it."""
    model = MATRIX["swin_tiny"]()
    net = copy.deepcopy(model.net)
    net.layers[0].blocks[1].drop_path2 = _Half()
    x = _image(1)
    plain = Engine(model.net, x, 8, 8, min_saving=0.0).cuts
    assert plain[:3] == ["patch_embed", "layers.0.blocks.0", "layers.0.blocks.1"]
    assert Engine(net, x, 8, 8, min_saving=0.0).cuts == ["patch_embed", "layers.0.blocks.0"]


def test_a_plan_is_tried_only_where_it_can_pay() -> None:
    """A 63x63 depthwise layer right after the stem spreads a window over the whole map, so
    the only cut (the stem) saves little: below `min_saving`, no plan, no trial batches run
    both ways. On a
    ResNet the cuts reach layer2 and save a good part of each pass; on a ConvNeXt they go
    between the blocks of its first stage (timm's stage class runs its downsampling, then its
    blocks: a chain, though not an nn.Sequential)."""
    x = torch.randn(1, 3, 224, 224)
    torch.manual_seed(0)
    wide = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 63, padding=31, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    engine = Engine(wide, x, 16, 8, min_saving=0.5)  # the stem's share of a timed pass: noisy, never half
    assert engine.segments == [] and engine.saving < 0.5
    assert engine.no_plan.startswith("the plan would save") and engine.no_plan.endswith("under 50%")
    resnet = Engine(torchvision.models.resnet18(num_classes=10).eval(), x, 16, 8)
    assert resnet.segments and resnet.saving >= 0.05
    convnext = Engine(timm.create_model("convnext_atto", num_classes=10).eval(), x, 16, 8, min_saving=0.0)
    assert {"stages.0.blocks.0", "stages.0.blocks.1"} <= {s.b for s in convnext.segments}


def test_only_stages_that_chain_their_children_are_cut_inside() -> None:
    """A cut inside a module that is not an nn.Sequential is taken only where the module's
    output is its children's run one after another: a timm ConvNeXt stage, never a residual
    block (its output adds the block's input) nor a DenseNet block (it concatenates)."""
    x = torch.randn(1, 3, 64, 64)
    for net, chained, not_chained in [
        (timm.create_model("convnext_atto", num_classes=10).eval(), {"stages.0", "stages.1"}, set()),
        (torchvision.models.resnet18(num_classes=10).eval(), set(), {"layer1.0", "layer2.0"}),
        (torchvision.models.densenet121(num_classes=10).eval(), set(), {"features.denseblock1"}),
    ]:
        tr = engine_module.trace(net, x)
        parents = chained | not_chained
        assert engine_module._chains(net, tr, x, parents) == chained


@pytest.mark.parametrize(
    "name, stride, side", [("lite0", 4, 15), pytest.param("swin_tiny", 6, 11, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("device", DEVICES)
def test_incremental_mode_is_exact_and_reported(
    monkeypatch: pytest.MonkeyPatch, name: str, stride: int, side: int, device: str
) -> None:
    monkeypatch.setattr(occ, "_PLAN_FROM", 0)
    monkeypatch.setattr(engine_module, "_MIN_SAVING", 0.0)  # a tiny image: any plan, however little it saves
    model = on(MATRIX[name](), device)
    x = torch.cat([_image(2), _image(3)]).to(device)
    stats: dict = {}
    kw = {"window": 8, "stride": stride, "baseline": "blur"}
    fast, _ = vl.occlusion_windows(model, x, 3, batch_size=16, stats=stats, **kw)
    slow, _ = vl.occlusion_windows(model, x, 3, incremental=False, **kw)
    assert stats["cuts"] and stats["windows"] == 2 * side * side and stats["forwards"] == 2 * side * side
    assert "exact" in stats["why"] or "faster" in stats["why"]
    assert (fast - slow).abs().max() <= 1e-4 * float(slow.abs().max())


def test_why_there_is_no_plan_is_reported() -> None:
    """A ViT: attention mixes every token from the first block on, so no layer keeps a
    window's change local; a few windows: not worth planning."""
    vit = MATRIX["vit_small"]()
    stats: dict = {}
    vl.occlusion_windows(vit, _image(), 0, window=8, stride=4, stats=stats)  # 225 windows
    assert stats["mode"] == "whole copies" and stats["why"] == "no plan: no layer where a window's change stays local"
    vl.occlusion_windows(vit, _image(), 0, window=16, stride=16, stats=stats)  # 16 windows
    assert stats["why"] == "no plan: fewer than 160 windows, too few to repay planning"


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
    assert stats["forwards"] <= 0.5 * stats["windows"]
    same = (approx - exact).abs() <= 1e-4 * float(exact.abs().max())
    assert int(same.sum()) >= stats["forwards"]  # the measured windows are exact
    assert torch.corrcoef(torch.stack([approx.flatten(), exact.flatten()]))[0, 1] > 0.5


def test_approximate_finds_the_exact_top_region_on_the_bundled_model() -> None:
    """Where the map is highest the approximate mode measures every window: on chelsea its
    top-10% pixels agree with the exact map's (IoU >= 0.8), from at most half the passes."""
    model = vl.load_model()
    x = model.prepare("chelsea")
    exact = vl.occlusion(model, x, window=32, stride=16)[0]
    stats: dict = {}
    approx = vl.occlusion(model, x, window=32, stride=16, approximate=True, stats=stats)[0]
    assert stats["forwards"] <= 0.5 * stats["windows"]
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
    """A folder streams its images; one that cannot be read is skipped with a line saying
    so (here the first file, which the target is not resolved on); `--profile` reports the
    whole run."""
    from visionlens.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        vl.sample_image(name).resize((80, 80)).save(photos / f"{name}.jpg")
    (photos / "a-broken.jpg").write_bytes(b"not a jpeg")
    args = ["--model", "tests.archs:resnet50", "--window", "32", "--stride", "16", "--approx", "--profile"]
    with pytest.raises(SystemExit) as e:
        main(["occlusion", str(photos), "-o", str(tmp_path / "out"), *args])
    out = capsys.readouterr().out
    assert int(e.value.code or 0) == 0, out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["chelsea-occlusion.png", "coffee-occlusion.png"]
    assert "skipped" in out and "a-broken.jpg" in out and "windows run" in out

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main(["occlusion", str(broken), "-o", str(tmp_path / "none"), *args])
    assert e.value.code == 2 and "none of the 1 images could be read" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


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
