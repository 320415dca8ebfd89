"""Targets beyond one class, Integrated Gradients against Captum, and the faithfulness metrics
(deletion/insertion, ROAD's imputation against pytorch-grad-cam's, cascading randomization)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import visionlens as vl
from visionlens.attribution import Class, Contrast, Function, Region, Similarity, bind
from visionlens.attribution.integrated import integrated_gradients, make_ig_baseline, quadrature
from visionlens.attribution.metrics import cascading_randomization, deletion_insertion, linear_impute, road
from visionlens.canvas import heldout_canvases
from visionlens.errors import ArgumentError, TargetError


@pytest.fixture(scope="module")
def cnn() -> vl.Model:
    return vl.load_model("digits_canvas_cnn")


@pytest.fixture(scope="module")
def canvases() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    c = heldout_canvases().subset(slice(0, 24))
    return c.tensor(), torch.from_numpy(c.labels), c.boxes


@pytest.fixture(scope="module")
def segmenter() -> vl.Model:
    torch.manual_seed(0)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    return vl.as_model(net.eval())


# ---------------------------------------------------------------- targets


def test_contrast_is_the_difference_of_two_class_gradients(cnn: vl.Model, canvases) -> None:
    x, y, _ = canvases
    x = x[:4]
    other = (y[:4] + 1) % 10
    a = integrated_gradients(cnn, x, y[:4], steps=4)
    b = integrated_gradients(cnn, x, other, steps=4)
    c = integrated_gradients(cnn, x, Contrast(y[:4], other), steps=4)
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and isinstance(c, torch.Tensor)
    torch.testing.assert_close(c, a - b, atol=1e-5, rtol=1e-4)


def test_contrast_default_is_top1_versus_runner_up(cnn: vl.Model, canvases) -> None:
    x = canvases[0][:3]
    bound = bind(cnn, x, Contrast())
    top2 = cnn.logits(x).topk(2, dim=-1)
    assert bound.per_image["a"].tolist() == top2.indices[:, 0].tolist()
    assert bound.per_image["b"].tolist() == top2.indices[:, 1].tolist()
    torch.testing.assert_close(bound(cnn.logits(x)), top2.values[:, 0] - top2.values[:, 1])


def test_sigmoid_softmax_and_callable_scores(cnn: vl.Model, canvases) -> None:
    x = canvases[0][:2]
    logits = cnn.logits(x)
    assert torch.allclose(bind(cnn, x, Class(3, "sigmoid"))(logits), logits[:, 3].sigmoid())
    assert torch.allclose(bind(cnn, x, 3, softmax=True)(logits), logits.softmax(-1)[:, 3])
    top3 = Function(lambda out: out.topk(3, dim=-1).values.sum(-1), "top-3")
    assert torch.allclose(bind(cnn, x, top3)(logits), logits.topk(3, dim=-1).values.sum(-1))
    assert bind(cnn, x, lambda out: out[:, 0]).label == "custom target"


def test_a_region_target_on_a_segmentation_model(segmenter: vl.Model) -> None:
    x = torch.randn(1, 3, 64, 64)
    out = segmenter.net(x)["out"].detach()
    pred = out.argmax(1)
    c = int(pred.flatten().mode().values)
    bound = bind(segmenter, x, c)  # a class on a segmentation output: its predicted region
    want = (out[:, c] * (pred == c)).flatten(1).sum(1)
    torch.testing.assert_close(bound(segmenter.net(x)), want)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:32] = True  # the top half, given at the input's resolution
    half = bind(segmenter, x, Region(c, mask))(segmenter.net(x))
    m = torch.nn.functional.interpolate(mask[None, None].float(), size=out.shape[-2:], mode="nearest")[0, 0]
    torch.testing.assert_close(half, (out[:, c] * m).flatten(1).sum(1))
    sal = vl.saliency(segmenter, x, Region(c, mask))
    assert sal.shape == (1, 64, 64) and float(sal.max()) > 0


def test_similarity_to_a_reference_image() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.fc = torch.nn.Identity()
    model = vl.as_model(net.eval())
    ref, x = torch.randn(1, 3, 64, 64), torch.randn(2, 3, 64, 64)
    bound = bind(model, x, Similarity(ref))
    with torch.no_grad():
        want = torch.nn.functional.cosine_similarity(net(x), net(ref).expand(2, -1))
        torch.testing.assert_close(bound(net(x)), want)
        assert float(bind(model, ref, Similarity(ref))(net(ref))[0]) == pytest.approx(1.0, abs=1e-5)
    assert vl.gradcam(model, x, Similarity(ref)).shape == (2, 64, 64)


def test_targets_that_do_not_fit_the_output_are_one_line_errors(cnn: vl.Model, segmenter: vl.Model, canvases) -> None:
    x = canvases[0][:1]
    with pytest.raises(TargetError, match="segmentation output"):
        bind(cnn, x, Region(3))
    with pytest.raises(TargetError, match="out of range"):
        bind(segmenter, torch.randn(1, 3, 64, 64), 7)  # 5 classes
    with pytest.raises(TargetError, match="itself"):
        bind(cnn, x, Contrast(4, 4))
    with pytest.raises(TargetError, match="reference embedding"):
        bind(cnn, x, Similarity(torch.zeros(7)))
    with pytest.raises(TargetError, match="one per image"):
        bind(cnn, x, Function(lambda out: out[:, :2]))
    with pytest.raises(TargetError, match="score"):
        bind(cnn, x, Class(1, "probit"))  # type: ignore[arg-type]


def test_smoothgrad_resolves_the_target_on_the_clean_images(cnn: vl.Model, canvases) -> None:
    """Batches mix copies of different images: without noise, SmoothGrad must be each image's
    own gradient saliency, for its own class (given, or its top-1)."""
    x, y, _ = canvases
    for target in (y[:3], None):
        smooth = vl.smoothgrad(cnn, x[:3], target, samples=3, noise=0.0, batch_size=4)
        torch.testing.assert_close(smooth, vl.saliency(cnn, x[:3], target), atol=1e-6, rtol=1e-5)
    with pytest.raises(TargetError, match="one per image"):
        vl.smoothgrad(cnn, x[:2], [1, 2, 3], samples=2)


# ---------------------------------------------------------------- Integrated Gradients


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_equals_captum(rule: str) -> None:
    from captum.attr import IntegratedGradients

    model = vl.load_model()
    net = model.net.double()
    try:
        x = model.prepare(["chelsea", "coffee"], size=64, square=True).double()
        base = make_ig_baseline(model, x, "black")
        ours = integrated_gradients(model, x, [282, 967], baseline=base, steps=12, rule=rule, internal_batch_size=5)
        ref = IntegratedGradients(net).attribute(
            x, baselines=base, target=[282, 967], n_steps=12, method=rule, internal_batch_size=5
        )
        assert isinstance(ours, torch.Tensor)
        assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4
    finally:
        net.float()


def test_integrated_gradients_completeness_and_bounded_batches(cnn: vl.Model, canvases) -> None:
    x, y, _ = canvases
    attr, gap = integrated_gradients(cnn, x[:3], y[:3], steps=64, return_delta=True)
    assert isinstance(attr, torch.Tensor)
    total = attr.flatten(1).sum(1)
    assert (gap.abs() < 0.02 * total.abs() + 1e-3).all(), (gap, total)
    # a batch of 4 path points or one of 64 give the same numbers
    small = integrated_gradients(cnn, x[:3], y[:3], steps=16, internal_batch_size=4)
    big = integrated_gradients(cnn, x[:3], y[:3], steps=16, internal_batch_size=64)
    assert isinstance(small, torch.Tensor) and isinstance(big, torch.Tensor)
    torch.testing.assert_close(small, big, atol=1e-5, rtol=1e-4)


def test_integrated_gradients_baselines_and_bad_input(cnn: vl.Model, canvases) -> None:
    x = canvases[0][:1]
    for kind in ("black", "blur", "uniform", "zero"):
        b = make_ig_baseline(cnn, x, kind)
        assert b.shape == x.shape and torch.isfinite(b).all()
    assert torch.allclose(cnn.to_image(make_ig_baseline(cnn, x, "black")), torch.zeros(1, 3, 32, 32), atol=1e-6)
    a, w = quadrature(7)
    assert w.sum() == pytest.approx(1.0) and (a > 0).all() and (a < 1).all()
    with pytest.raises(ArgumentError, match="`baseline`"):
        make_ig_baseline(cnn, x, "grey")
    with pytest.raises(ArgumentError, match="`steps`"):
        integrated_gradients(cnn, x, steps=0)
    with pytest.raises(ArgumentError, match="`rule`"):
        quadrature(8, "simpson")


# ---------------------------------------------------------------- faithfulness


def test_deletion_and_insertion_separate_a_faithful_map_from_its_inverse(cnn: vl.Model, canvases) -> None:
    """On canvases the digit is the evidence: a map of the digit's box must delete faster and
    insert faster than the inverse map (everything but the digit)."""
    x, y, boxes = canvases
    box = torch.zeros(x.shape[0], 32, 32)
    for i, (y0, y1, x0, x1) in enumerate(boxes.astype(int)):
        box[i, y0:y1, x0:x1] = 1.0
    box = box + 0.01 * torch.rand(box.shape, generator=torch.Generator().manual_seed(0))
    good_d, good_i = deletion_insertion(cnn, x, box, y, steps=16)
    bad_d, bad_i = deletion_insertion(cnn, x, -box, y, steps=16)
    assert good_d.scores.shape == (x.shape[0], 17)
    assert good_d.auc.mean() < 0.5 * bad_d.auc.mean(), (good_d.auc.mean(), bad_d.auc.mean())
    assert good_i.auc.mean() > bad_i.auc.mean() + 0.2, (good_i.auc.mean(), bad_i.auc.mean())
    # the first point is the clean image, the last has every pixel removed (inserted)
    probs = cnn.logits(x).softmax(-1).gather(1, y.view(-1, 1))[:, 0].numpy()
    np.testing.assert_allclose(good_d.scores[:, 0], probs, atol=1e-5)
    np.testing.assert_allclose(good_i.scores[:, -1], probs, atol=1e-5)


def test_deletion_steps_are_equal_parts(cnn: vl.Model, canvases) -> None:
    """Step k of 8 has exactly k/8 of the pixels removed, the most important first."""
    from visionlens.attribution.metrics import _ranks

    maps = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1))
    ranks = _ranks(maps)
    first = torch.ceil((ranks + 1).double() * 8 / 1024)
    for k in range(9):
        assert int((first <= k).sum()) == k * 128
    assert int(ranks[0, maps.flatten().argmax()]) == 0


def test_linear_imputation_equals_pytorch_grad_cams() -> None:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    gen = torch.Generator().manual_seed(0)
    img = torch.randn(3, 20, 24, generator=gen)
    keep = (torch.rand(20, 24, generator=gen) > 0.4).float()
    keep[0, :] = 0  # removed pixels on the border too
    ref = NoisyLinearImputer(noise=0.0)(img, keep)
    ours = linear_impute(img, keep == 0)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[:, keep == 1], img[:, keep == 1])


def test_road_orders_a_faithful_map(cnn: vl.Model, canvases) -> None:
    x, y, boxes = canvases
    box = torch.zeros(x.shape[0], 32, 32)
    for i, (y0, y1, x0, x1) in enumerate(boxes.astype(int)):
        box[i, y0:y1, x0:x1] = 1.0
    box = box + 0.01 * torch.rand(box.shape, generator=torch.Generator().manual_seed(0))
    morf, lerf = road(cnn, x[:12], box[:12], y[:12], fractions=(0.1, 0.3, 0.5))
    assert morf.scores.shape == (12, 3)
    assert morf.mean.mean() < lerf.mean.mean() - 0.3, (morf.mean.mean(), lerf.mean.mean())
    with pytest.raises(ArgumentError, match="`fractions`"):
        road(cnn, x[:1], box[:1], fractions=(0.0, 1.5))


def test_metrics_refuse_maps_of_the_wrong_shape(cnn: vl.Model, canvases) -> None:
    x = canvases[0][:2]
    with pytest.raises(ArgumentError, match="`maps`"):
        deletion_insertion(cnn, x, torch.rand(2, 16, 16))
    with pytest.raises(ArgumentError, match="`maps`"):
        road(cnn, x, torch.rand(3, 32, 32))
    with pytest.raises(ArgumentError, match="NaN"):
        deletion_insertion(cnn, x, torch.full((2, 32, 32), float("nan")))


def test_cascading_randomization_tells_gradients_from_an_edge_detector(cnn: vl.Model, canvases) -> None:
    """Adebayo et al.'s point: a map that ignores the weights (here the image's own edges)
    keeps a rank correlation of 1 however much of the network is destroyed; the gradient's
    falls. The trained model is left as it was."""
    x, y, _ = canvases
    before = {k: v.clone() for k, v in cnn.net.state_dict().items()}

    def edges(m: vl.Model, xx: torch.Tensor, t: object) -> torch.Tensor:
        img = xx.mean(1)
        return img.diff(dim=-1, prepend=img[..., :1]).abs() + img.diff(dim=-2, prepend=img[..., :1, :]).abs()

    grad = cascading_randomization(cnn, x[:4], lambda m, xx, t: vl.saliency(m, xx, t), y[:4], groups=3)
    fake = cascading_randomization(cnn, x[:4], edges, y[:4], groups=3)
    assert grad.spearman.shape == (4, 3) and len(grad.groups) == 3
    assert np.allclose(fake.spearman, 1.0)
    assert grad.spearman[:, -1].mean() < 0.6, grad.spearman
    assert all(torch.equal(v, cnn.net.state_dict()[k]) for k, v in before.items())


def test_evaluate_table_and_best(cnn: vl.Model, canvases) -> None:
    x, y, _ = canvases
    ev = vl.evaluate(
        cnn, x[:4], ["gradient", "gradcam", "ig"], y[:4], steps=8, metrics=["deletion", "insertion", "road"]
    )
    rows = ev.table()
    assert [r["method"] for r in rows] == ["gradient", "gradcam", "ig"]
    assert all(r[k] is not None for r in rows for k in ("deletion", "insertion", "road_morf", "road_lerf"))
    assert ev.best("deletion") == min(rows, key=lambda r: r["deletion"])["method"]
    assert ev.score_kind == "probability"
    with pytest.raises(ArgumentError, match="did you mean"):
        vl.evaluate(cnn, x[:1], ["gradcamm"])
    with pytest.raises(ArgumentError, match="metric"):
        vl.evaluate(cnn, x[:1], ["gradient"], metrics=["accuracy"])


# ---------------------------------------------------------------- the command line


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from visionlens.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    cap = capsys.readouterr()
    return int(e.value.code or 0), cap.out, cap.err


def test_cli_targets(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from .pictures import check_picture

    out = tmp_path / "c.png"
    code, _, err = run(capsys, "saliency", "chelsea", "-t", "tiger cat", "--versus", "tabby", "--method", "gradcam",
                       "-o", str(out))  # fmt: skip
    assert code == 0, err
    check_picture(out)
    seg = ["--model", "tests.archs:lraspp"]
    mask = tmp_path / "mask.png"
    from PIL import Image

    Image.fromarray(np.pad(np.full((32, 32), 255, np.uint8), 16)).save(mask)
    code, _, err = run(capsys, "saliency", "chelsea", *seg, "--method", "gradient", "-t", "1", "--mask", str(mask),
                       "-o", str(tmp_path / "s.png"), "--save-array")  # fmt: skip
    assert code == 0, err
    sal = np.load(tmp_path / "s.npy")
    assert sal.shape == (64, 64) and sal.max() > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saliency", "chelsea", "--mask", "MASK"], "segmentation output"),
        (["saliency", "chelsea", "-t", "282", "--versus", "tiger cat"], "itself"),
        (["saliency", "chelsea", "--model", "tests.archs:lraspp", "-t", "9"], "out of range"),
        (["saliency", "chelsea", "--score", "probit"], "--score"),
        (["saliency", "chelsea", "--similar-to", "coffee", "-t", "3"], "--similar-to"),
        (["evaluate", "chelsea", "--methods", "gradcamm"], "did you mean"),
        (["evaluate", "chelsea", "--metrics", "accuracy"], "metric"),
        (["evaluate", "chelsea", "--methods", ""], "empty"),
        (["evaluate", "chelsea", "--methods", "rollout"], "does not apply"),
    ],
)
def test_cli_bad_targets_are_one_line_errors(tmp_path, capsys: pytest.CaptureFixture[str], args, message) -> None:
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    args = [str(mask) if a == "MASK" else a for a in args]
    code, _, err = run(capsys, *args, "-o", str(tmp_path / "x.png"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [mask]  # nothing half-written


@pytest.mark.slow
def test_cli_evaluate(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from .pictures import check_picture

    out = tmp_path / "e.png"
    code, text, err = run(capsys, "evaluate", "chelsea", "--model", "tests.archs:resnet50", "--methods",
                          "gradient,gradcam,ig", "--steps", "8", "--metrics", "deletion,insertion,road", "--sanity",
                          "-o", str(out), "--save-array")  # fmt: skip
    assert code == 0, err
    assert all(m in text for m in ("gradient", "gradcam", "ig", "deletion AUC", "ROAD MoRF", "randomized"))
    check_picture(out)
    for m in ("gradient", "gradcam", "ig"):
        check_picture(tmp_path / f"e-sanity-{m}.png")
    arrays = np.load(tmp_path / "e.npz")
    assert list(arrays["methods"]) == ["gradient", "gradcam", "ig"]
    assert np.isfinite(arrays["deletion"]).all() and np.isfinite(arrays["road_lerf"]).all()


def test_methods_that_apply_follow_the_architecture() -> None:
    """Rollout needs plain global attention: a ViT has it, Swin's windowed attention with
    relative position biases does not (evaluate at its defaults once picked rollout on Swin
    and failed); guided backprop needs a ReLU."""
    from visionlens.attribution import available_methods

    from .archs import swin_tiny, vit_small

    vit, swin = available_methods(vit_small()), available_methods(swin_tiny())
    assert "rollout" in vit and "guided" not in vit
    assert "rollout" not in swin and "guided" not in swin
