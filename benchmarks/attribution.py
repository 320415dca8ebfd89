"""Benchmark visionlens attribution against Captum and a bare forward+backward pass.

Same process, image(s), model (bundled EfficientNet-Lite0), 224 px input and 2 CPU threads.

    python benchmarks/attribution.py [--quick] [--only occlusion|gradients|ig|metrics] [--repeats N]

- ig: Integrated Gradients, 50 steps, one 224-px image, internal batch 16, against Captum's
  with the same batch (memory is bounded by that batch by construction: path points are
  made batch by batch);
- metrics: deletion + insertion curves (100 steps each) against the bare batched forward
  passes the curves need (202 images of 224 px in batches of 32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum.attr import GuidedBackprop, IntegratedGradients, Occlusion, Saliency

import visionlens as vl

FIRST = ["chelsea", "coffee", "rocket", "astronaut"]
OCC_ARGS: dict[str, Any] = dict(sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8), baselines=0)


def bench(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of `fn` over `repeats` runs after `warmup` runs, and its last result."""
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float, Any, Any]:
    """Median wall times of `a` and `b` run alternately (a, b, a, b, ...) after one warm-up
    each, so that load changes on a shared machine hit both alike; and their last results."""
    out_a, out_b = a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_a = a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_b = b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), out_a, out_b


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def occlusion_bench(model: vl.Model, reps: int | None, quick: bool) -> list[str]:
    x = model.prepare("chelsea")
    target = int(vl.classify(model, x, 1)[1][0, 0])
    n_vl, n_cap = (1, 1) if quick else (reps or 3, reps or 1)

    def forward_fn(inp: torch.Tensor) -> torch.Tensor:
        return model.net(inp).softmax(-1)

    def run_vl() -> torch.Tensor:
        return vl.occlusion(model, x, target, window=16, stride=8, baseline="zero", softmax=True)

    t_vl, vl_map = bench(run_vl, n_vl)
    print(f"occlusion  visionlens          {t_vl:7.2f} s  (median of {n_vl})", flush=True)

    captum: dict[int, tuple[float, torch.Tensor]] = {}
    for ppe in (1, 16) if quick else (1, 16, 64):

        def run_captum(ppe: int = ppe) -> torch.Tensor:
            with torch.no_grad():
                occ = Occlusion(forward_fn)
                return occ.attribute(x, target=target, perturbations_per_eval=ppe, **OCC_ARGS)

        captum[ppe] = bench(run_captum, n_cap)
        print(
            f"occlusion  captum ppe={ppe:<3d}      {captum[ppe][0]:7.2f} s  (median of {n_cap})",
            flush=True,
        )
    best = min(captum, key=lambda p: captum[p][0])
    t_cap, attr = captum[best]
    diff = rel_diff(attr[0, 0], vl_map[0])
    status = "OK" if diff <= 1e-4 else "FAIL (> 1e-4)"
    return [
        f"occlusion  captum(best, ppe={best}) {t_cap:.1f} s  visionlens {t_vl:.1f} s  "
        f"ratio {t_cap / t_vl:.1f}x  max|diff|/max {diff:.1e} {status}"
    ]


def gradients_bench(model: vl.Model, reps: int | None, quick: bool) -> list[str]:
    names = FIRST + [n for n in vl.sample_names() if n not in FIRST]
    xb = model.prepare([names[i % len(names)] for i in range(16)])
    t = vl.classify(model, xb, 1)[1][:, 0]
    n = 1 if quick else reps or 5
    net = model.net.eval()

    def bare() -> torch.Tensor:
        x = xb.clone().requires_grad_()
        out = net(x)
        out.gather(1, t[:, None]).sum().backward()
        assert x.grad is not None
        return x.grad

    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    t_bare, grad = bench(bare, n, warmup=3)  # the first autograd calls are slow
    for p, f in zip(net.parameters(), flags, strict=True):
        p.requires_grad_(f)
    print(f"batch 16   bare fwd+bwd        {t_bare:7.3f} s  (median of {n})", flush=True)

    # Captum runs on the model as loaded (parameters require grad), as a user would call it.
    runs: dict[str, tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]] = {
        "saliency": (
            lambda: vl.saliency(model, xb, t),
            lambda: Saliency(net).attribute(xb, target=t, abs=True),
        ),
        "guided_backprop": (
            lambda: vl.guided_backprop(model, xb, t),
            lambda: GuidedBackprop(net).attribute(xb, target=t),
        ),
    }
    lines = []
    for name, (run_vl, run_cap) in runs.items():
        t_vl, out_vl = bench(run_vl, n)
        t_cap, out_cap = bench(run_cap, n)
        print(f"{name:<16s} visionlens {t_vl:7.3f} s  captum {t_cap:7.3f} s", flush=True)
        if name == "saliency":  # visionlens = max over channels of Captum's |grad|
            check = f"vs captum max|diff|/max {rel_diff(out_vl, out_cap.amax(1)):.1e}"
        else:  # Captum only overrides nn.ReLU: with ReLU6 it returns the plain gradient
            check = (
                f"captum-vs-plain-grad max|diff|/max {rel_diff(out_cap, grad):.1e}, "
                f"visionlens-vs-captum {rel_diff(out_vl, out_cap):.1e}"
            )
        ok = "OK" if t_vl / t_bare <= 1.2 else "SLOW (> 1.2x)"
        lines.append(
            f"{name:<16s} bare {t_bare:.3f} s  visionlens {t_vl:.3f} s  captum {t_cap:.3f} s  "
            f"vl/bare {t_vl / t_bare:.2f}x {ok}  captum/vl {t_cap / t_vl:.2f}x  {check}"
        )
    return lines


def ig_bench(model: vl.Model, reps: int | None, quick: bool) -> list[str]:
    from visionlens.attribution.integrated import integrated_gradients, make_ig_baseline

    x = model.prepare("chelsea")
    base = make_ig_baseline(model, x, "black")
    n = 1 if quick else reps or 5

    def run_vl() -> Any:
        return integrated_gradients(model, x, 282, baseline=base, steps=50, internal_batch_size=16)

    def run_cap() -> torch.Tensor:
        ig = IntegratedGradients(model.net)
        return ig.attribute(x, baselines=base, target=282, n_steps=50, internal_batch_size=16)

    t_vl, t_cap, a_vl, a_cap = bench_pair(run_vl, run_cap, n)
    print(f"ig 50 steps   visionlens {t_vl:7.3f} s  captum {t_cap:7.3f} s", flush=True)
    ok = "OK" if t_vl / t_cap <= 1.1 else "SLOW (> 1.1x)"
    return [
        f"integrated gradients, 50 steps, batch 16: visionlens {t_vl:.2f} s  captum {t_cap:.2f} s  "
        f"vl/captum {t_vl / t_cap:.2f}x {ok}  max|diff|/max {rel_diff(a_vl, a_cap):.1e} (float32)"
    ]


def metrics_bench(model: vl.Model, reps: int | None, quick: bool) -> list[str]:
    from visionlens.attribution.metrics import deletion_insertion

    x = model.prepare("chelsea")
    maps = vl.gradcam(model, x, 282)
    n = 1 if quick else reps or 3
    steps, batch = 100, 32
    net = model.net.eval()
    # the very images the curves go through, made before the clock starts: the bare loop times
    # only the forward passes (image content matters: all-black inputs run slower on this CPU)
    ranks = maps.flatten().argsort(descending=True).argsort().view(1, 1, 224, 224)
    first = torch.ceil((ranks + 1).double() * steps / (224 * 224))
    black = model.to_input(torch.zeros(1, 3, 224, 224))
    blur = vl.attribution.metrics._blurred(x)
    k = torch.arange(steps + 1).view(-1, 1, 1, 1)
    cl = torch.channels_last  # the faster layout for convolutions on CPU, as a careful user would use
    images = [
        torch.where(first <= k, black, x).contiguous(memory_format=cl),
        torch.where(first <= k, x, blur).contiguous(memory_format=cl),
    ]

    def bare() -> torch.Tensor:
        outs = []
        with torch.no_grad():
            for imgs in images:
                for start in range(0, steps + 1, batch):
                    outs.append(net(imgs[start : start + batch]).softmax(-1)[:, 282])
        return torch.cat(outs)

    def curves() -> Any:
        return deletion_insertion(model, x, maps, 282, steps=steps, batch_size=batch)

    t_vl, t_bare, _, _ = bench_pair(curves, bare, n)
    print(f"deletion+insertion  visionlens {t_vl:7.3f} s  bare forwards {t_bare:7.3f} s", flush=True)
    ok = "OK" if t_vl / t_bare <= 1.1 else "SLOW (> 1.1x)"
    return [
        f"deletion+insertion, 2 x {steps + 1} images, batch {batch}: visionlens {t_vl:.2f} s  "
        f"bare forwards {t_bare:.2f} s  vl/bare {t_vl / t_bare:.2f}x {ok}"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip Captum ppe=64; 1 repeat everywhere")
    ap.add_argument("--only", choices=["occlusion", "gradients", "ig", "metrics"], help="run one part only")
    helps = "repeats for every timing (default: occlusion captum 1, visionlens 3; gradients 5)"
    ap.add_argument("--repeats", type=int, default=None, help=helps)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    torch.set_num_threads(2)
    model = vl.load_model()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model.name}, "
        f"224 px, load average {os.getloadavg()[0]:.2f} (timings need an otherwise idle machine)",
        flush=True,
    )
    lines: list[str] = []
    if args.only in (None, "occlusion"):
        lines += occlusion_bench(model, args.repeats, args.quick)
    if args.only in (None, "gradients"):
        lines += gradients_bench(model, args.repeats, args.quick)
    if args.only in (None, "ig"):
        lines += ig_bench(model, args.repeats, args.quick)
    if args.only in (None, "metrics"):
        lines += metrics_bench(model, args.repeats, args.quick)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
