"""Occlusion on the architecture matrix against Captum, same process, same image and model.

    python benchmarks/occlusion.py [--models resnet50,vgg16,...] [--window 16] [--stride 8]
                                   [--ppe 1,16] [--repeats 1] [--size 224] [--threads 2]
    python benchmarks/occlusion.py --alternate --models vit_small --ppe 16 --repeats 4   # alternated
    python benchmarks/occlusion.py --many 100 [--captum-sample 20] [--threads 1]   # many images
    python benchmarks/occlusion.py --approx-samples --threads 1   # approximate vs exact, sample images
    python benchmarks/occlusion.py --device cuda   # the matrix on a GPU: both sides on it, the CUDA ratio

For each model (random weights, BatchNorm statistics recalibrated on the bundled sample
images so that the network is not degenerate, except EfficientNet-Lite0 with its bundled
ImageNet weights): visionlens exact (its mode, the seconds per segment of the network), the
approximate mode with the top-10% IoU and Spearman correlation of its per-pixel map against
the exact one, and `captum.attr.Occlusion` at each `perturbations_per_eval` given (the best
one is the reference). Every time includes everything a call does (copying and folding the
network, planning, the passes); each is a median of `--repeats` runs. Results stream to stdout
as they come, one table row per model at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import timm
import torch
import torchvision
from captum.attr import Occlusion
from scipy.stats import spearmanr
from torch import nn

import visionlens as vl
from visionlens.attribution.occlusion import spread_windows

MATRIX: dict[str, Callable[[], nn.Module]] = {
    "efficientnet_lite0": lambda: vl.load_model().net,
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(),
    "resnet50": lambda: torchvision.models.resnet50(),
    "densenet121": lambda: torchvision.models.densenet121(),
    "convnext_tiny": lambda: timm.create_model("convnext_tiny"),
    "vit_small": lambda: timm.create_model("vit_small_patch16_224"),
    "swin_tiny": lambda: timm.create_model("swin_tiny_patch4_window7_224"),
    "vgg16": lambda: torchvision.models.vgg16(),
}


def build(name: str, size: int, device: str = "cpu") -> tuple[vl.Model, torch.Tensor]:
    """The model and the chelsea image at `size` px (the bundled model's preprocessing), both
    on `device` (BatchNorm statistics are gathered on the CPU first)."""
    bundled = vl.load_model()
    torch.manual_seed(0)
    net = MATRIX[name]().eval()
    if name != "efficientnet_lite0":  # random weights: BatchNorm statistics of real images
        samples = bundled.prepare(vl.sample_names()[:12], size=size, square=True)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a plain average over the batch
        with torch.no_grad():
            net.train()(samples)
        net.eval()
    model = vl.models.as_model(net).to(device)
    return model, bundled.prepare("chelsea", size=size, square=True).to(device)


def _wait() -> None:
    """Let queued CUDA work finish, so that a timer read next counts it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of `fn` over `repeats` runs (no warm-up on the CPU: a call is what a
    user waits for; on a GPU one untimed run first, which pays CUDA's one-time set-up), and
    its last result."""
    times, out = [], None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        fn()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _wait()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def agreement(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Top-10% IoU and Spearman correlation of two per-pixel maps."""
    a, ref = a.flatten().cpu(), ref.flatten().cpu()
    k = max(1, a.numel() // 10)
    ta, tr = set(a.topk(k).indices.tolist()), set(ref.topk(k).indices.tolist())
    return len(ta & tr) / len(ta | tr), float(spearmanr(a.numpy(), ref.numpy()).statistic)


def smoothness(drops: torch.Tensor) -> float:
    """Correlation of the drops of windows two positions apart (2 strides), along both axes:
    what estimating unmeasured windows from their neighbours relies on. Near 0, the map is
    noise at the window scale (random-weight networks, whose probabilities barely move)."""
    d = drops.float()
    pairs = [(d[:, :-2], d[:, 2:]), (d[:-2], d[2:])]
    return sum(float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) for a, b in pairs) / 2


def run_model(name: str, args: argparse.Namespace) -> str:
    model, x = build(name, args.size, args.device)
    net = model.net
    target = int(net(x).argmax())
    w, s, reps = args.window, args.stride, args.repeats
    stats: dict[str, Any] = {}

    def exact() -> tuple[torch.Tensor, torch.Tensor]:
        stats.clear()  # the per-window drops, and spread per pixel as `vl.occlusion` does
        d, _ = vl.occlusion_windows(model, x, target, window=w, stride=s, stats=stats)
        return d, spread_windows(d, (x.shape[-2], x.shape[-1]), w, s)

    t_ex, (drops, m_ex) = bench(exact, reps)
    stages = ", ".join(f"{k} {v:.2f}" for k, v in stats["stages"].items())
    print(
        f"{name}: exact {t_ex:.2f} s ({stats['mode']}: {stats['why']}; batch {stats['batch_size']}) [{stages}]",
        flush=True,
    )
    approx_stats: dict[str, Any] = {}
    t_ap, m_ap = bench(
        lambda: vl.occlusion(model, x, target, window=w, stride=s, approximate=True, stats=approx_stats), reps
    )
    iou, rho = agreement(m_ap[0], m_ex[0])
    smooth = smoothness(drops[0])
    done = f"{approx_stats['forwards']} of {approx_stats['windows']} windows"
    print(
        f"{name}: approximate {t_ap:.2f} s ({done}) IoU {iou:.2f} Spearman {rho:.2f}; exact map: largest drop "
        f"{float(drops.max()):.1e}, neighbour correlation {smooth:.2f}",
        flush=True,
    )

    def forward_fn(inp: torch.Tensor) -> torch.Tensor:
        return net(inp).softmax(-1)

    captum = {}
    for ppe in args.ppe:

        def run_captum(ppe: int = ppe) -> torch.Tensor:
            with torch.no_grad():
                return Occlusion(forward_fn).attribute(
                    x,
                    target=target,
                    sliding_window_shapes=(3, w, w),
                    strides=(3, s, s),
                    baselines=0,
                    perturbations_per_eval=ppe,
                )

        captum[ppe] = bench(run_captum, reps)
        print(f"{name}: captum ppe={ppe} {captum[ppe][0]:.2f} s", flush=True)
    best = min(captum, key=lambda p: captum[p][0])
    t_cap, attr = captum[best]
    diff = float((m_ex[0] - attr[0, 0]).abs().max() / attr.abs().max())
    return (
        f"| {name} | {t_ex:.1f} s, {t_cap / t_ex:.1f}x ({stats['mode']}) | {t_ap:.1f} s, {t_cap / t_ap:.1f}x, "
        f"IoU {iou:.2f}, Spearman {rho:.2f} | {float(drops.max()):.0e}, {smooth:.2f} | {t_cap:.1f} s (ppe={best}) "
        f"| {diff:.0e} |"
    )


def alternated(name: str, args: argparse.Namespace) -> None:
    """Exact visionlens against Captum (its first --ppe), runs alternated `--repeats` times in
    one process so that the machine's drift falls on both sides alike; medians."""
    model, x = build(name, args.size, args.device)
    target = int(model.net(x).argmax())
    w, s, ppe = args.window, args.stride, args.ppe[0]

    def captum() -> torch.Tensor:
        with torch.no_grad():
            return Occlusion(lambda inp: model.net(inp).softmax(-1)).attribute(
                x, target=target, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0,
                perturbations_per_eval=ppe,
            )  # fmt: skip

    def ours() -> torch.Tensor:
        return vl.occlusion(model, x, target, window=w, stride=s)

    times: dict[str, list[float]] = {"visionlens": [], "captum": []}
    if args.device != "cpu":  # CUDA's one-time set-up, untimed
        ours(), captum()
    for _ in range(args.repeats):
        for side, fn in (("visionlens", ours), ("captum", captum)):
            _wait()
            t0 = time.perf_counter()
            fn()
            _wait()
            times[side].append(time.perf_counter() - t0)
    mine, theirs = statistics.median(times["visionlens"]), statistics.median(times["captum"])
    runs = "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in v) for k, v in times.items())
    ratio = theirs / mine
    print(f"{name}: visionlens {mine:.1f} s, Captum (ppe={ppe}) {theirs:.1f} s, {ratio:.2f}x ({runs})", flush=True)


def crops(n: int) -> list[Any]:
    """n distinct images: seeded random crops (35-100% of the area) of the bundled samples,
    every other one mirrored."""
    from PIL import ImageOps

    gen = torch.Generator().manual_seed(0)
    names, out = vl.sample_names(), []
    for i in range(n):
        img = vl.sample_image(names[i % len(names)])
        w, h = img.size
        side = float(torch.empty(1).uniform_(0.35, 1.0, generator=gen)) ** 0.5
        cw, ch = max(32, int(w * side)), max(32, int(h * side))
        x0, y0 = (int(torch.randint(0, d + 1, (1,), generator=gen)) for d in (w - cw, h - ch))
        img = img.crop((x0, y0, x0 + cw, y0 + ch))
        out.append(ImageOps.mirror(img) if i % 2 else img)
    return out


def many_images(n: int, w: int, s: int, captum_sample: int) -> None:
    """Occlusion of n images streamed as the CLI streams a folder (`occlusion_stream`, 8
    images read at a time, their windows sharing batches) against Captum one image at a time
    on `captum_sample` of them (its time per image does not depend on the image: every image
    is 224 px and runs the same passes), and one image alone on each side, in the same run."""
    model = vl.load_model()
    images = crops(n)
    x = model.prepare(images)
    with torch.no_grad():
        targets = model.net(x).argmax(1).tolist()

    def captum(i: int) -> torch.Tensor:
        with torch.no_grad():
            return Occlusion(lambda inp: model.net(inp).softmax(-1)).attribute(
                x[i : i + 1], target=targets[i], sliding_window_shapes=(3, w, w), strides=(3, s, s),
                baselines=0, perturbations_per_eval=1,
            )  # fmt: skip

    t_one, _ = bench(lambda: vl.occlusion(model, x[:1], targets[0], window=w, stride=s), 1)
    t_one_c, _ = bench(lambda: captum(0), 1)
    print(f"one image: visionlens {t_one:.1f} s, Captum {t_one_c:.1f} s, {t_one_c / t_one:.1f}x", flush=True)
    stream = vl.occlusion_stream
    t_many, ours = bench(lambda: [m for _, _, m, _ in stream(model, images, window=w, stride=s, progress=False)], 1)
    print(f"{n} images streamed: visionlens {t_many:.1f} s ({t_many / n:.2f} s an image)", flush=True)
    k = min(n, captum_sample)
    some = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    t0 = time.perf_counter()
    theirs = {i: captum(i) for i in some}
    per = (time.perf_counter() - t0) / len(some)
    diff = max(float((ours[i] - theirs[i][0, 0]).abs().max() / theirs[i].abs().max()) for i in some)
    print(
        f"Captum one at a time, measured on {len(some)} of the {n} images: {per:.2f} s an image, "
        f"{per * n:.0f} s for {n}: visionlens {per * n / t_many:.1f}x (one image alone: {t_one_c / t_one:.1f}x); "
        f"max diff {diff:.0e} of the map on those {len(some)}",
        flush=True,
    )


def approx_samples(w: int, s: int) -> None:
    """The approximate mode against the exact map on the bundled model and each bundled sample
    image (their top-1 class): windows measured, top-10% IoU, Spearman over all pixels."""
    model = vl.load_model()
    ious, rhos, done = [], [], []
    for name in vl.sample_names():
        x = model.prepare(name, size=224, square=True)
        exact = vl.occlusion(model, x, window=w, stride=s)[0]
        stats: dict[str, Any] = {}
        approx = vl.occlusion(model, x, window=w, stride=s, approximate=True, stats=stats)[0]
        iou, rho = agreement(approx, exact)
        ious.append(iou)
        rhos.append(rho)
        done.append(stats["forwards"])
        done_of = f"{stats['forwards']} of {stats['windows']} windows"
        print(f"{name}: {done_of}, IoU {iou:.2f}, Spearman {rho:.3f}", flush=True)
    both = sum(i >= 0.8 and r >= 0.9 for i, r in zip(ious, rhos, strict=True))
    print(
        f"{len(ious)} images: {statistics.mean(done):.0f} windows on average; IoU mean {statistics.mean(ious):.2f}, "
        f"min {min(ious):.2f}; Spearman {min(rhos):.2f}-{max(rhos):.2f}, median {statistics.median(rhos):.2f}; "
        f"{both} with IoU >= 0.8 and Spearman >= 0.9",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(MATRIX), help="comma list of " + ", ".join(MATRIX))
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--ppe", default="1,16", help="Captum perturbations_per_eval values to try")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where both sides run (the matrix, --alternate)")
    ap.add_argument("--alternate", action="store_true", help="exact against Captum only, runs alternated")
    ap.add_argument("--many", type=int, default=0, help="instead: N images streamed, against Captum one at a time")
    ap.add_argument("--captum-sample", type=int, default=20, help="with --many: images Captum is timed on")
    ap.add_argument(
        "--approx-samples", action="store_true", help="instead: approximate against exact on every sample image"
    )
    args = ap.parse_args()
    args.ppe = [int(p) for p in args.ppe.split(",")]
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA device here")
    if args.device != "cpu" and (args.many or args.approx_samples):
        ap.error("--device applies to the matrix and --alternate; --many and --approx-samples run on the CPU")
    where = torch.cuda.get_device_name(torch.device(args.device)) if args.device != "cpu" else "CPU"
    # float32 convolutions on both sides, not TF32 (cuDNN's default rounds their inputs): the
    # maps are compared at 1e-4 of their maximum, and the incremental plan is checked exact
    torch.backends.cudnn.allow_tf32 = False
    print(
        f"torch {torch.__version__} on {where}, {torch.get_num_threads()} threads, {args.size} px, "
        f"window {args.window}, stride {args.stride}, load average {os.getloadavg()[0]:.2f} "
        "(timings need an otherwise idle machine)",
        flush=True,
    )
    if args.approx_samples:
        approx_samples(args.window, args.stride)
        return
    if args.many:
        many_images(args.many, args.window, args.stride, args.captum_sample)
        return
    if args.alternate:
        for name in args.models.split(","):
            alternated(name, args)
        return
    rows = []
    for name in args.models.split(","):
        rows.append(run_model(name, args))
        print(rows[-1], flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print("| model | visionlens exact | visionlens approximate | largest drop, neighbour corr | Captum | diff |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
