"""Benchmark visionlens image synthesis against lucent and the PyTorch style-transfer tutorial.

Same process, bundled EfficientNet-Lite0, 2 CPU threads (--threads). Needs `pip install torch-lucent`.

    python benchmarks/synthesis.py [--quick] [--only vis|style|memory] [--repeats N] [--steps N]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import Normalize

import visionlens as vl
from visionlens.images import image_tensor
from visionlens.layers import style_layers
from visionlens.synthesis.engine import synthesize
from visionlens.synthesis.objectives import Objective, State
from visionlens.synthesis.recipes import visualize

LAYER, UNIT = "blocks.4", 7
Curve = list[tuple[float, float]]  # (seconds since start, tutorial loss)


def unit_act(model: vl.Model, img01: torch.Tensor) -> float:
    """The common measurement: mean of channel UNIT of LAYER for an image in [0, 1], no transforms."""
    return float(vl.activations(model, model.to_input(img01), LAYER)[0, UNIT].mean())


def vis_bench(model: vl.Model, steps: int, repeats: int) -> list[str]:
    from lucent.modelzoo.util import get_model_layers
    from lucent.optvis import param, render

    pre = model.preprocessing
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)  # the wrapper's Normalize is (x - 0.5) / 0.5
    name = "1_" + LAYER.replace(".", "_")  # lucent joins module names with "_"; the net is child "1"
    assert name in get_model_layers(nn.Sequential(Normalize(pre.mean, pre.std), model.net))

    def lucent(n: int) -> torch.Tensor:
        # a fresh copy each run: lucent never removes the hooks it puts on every module
        wrapper = nn.Sequential(Normalize(pre.mean, pre.std), copy.deepcopy(model.net)).eval()
        kw = dict(thresholds=(n,), preprocess=False, show_image=False, progress=False)
        out = render.render_vis(wrapper, f"{name}:{UNIT}", param_f=lambda: param.image(128), **kw)
        return torch.from_numpy(np.ascontiguousarray(out[-1])).permute(0, 3, 1, 2).float()

    runs: dict[str, Callable[[int], torch.Tensor]] = {
        "visionlens": lambda n: visualize(model, LAYER, UNIT, steps=n, size=128).images,
        "lucent": lucent,
    }
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}  # (seconds, activation)
    for run in runs.values():  # warm-up, untimed
        run(8)
    for i in range(repeats):
        for who, run in runs.items():
            torch.manual_seed(i)  # lucent's initial image and transforms; visionlens seeds itself
            np.random.seed(i)
            t0 = time.perf_counter()
            img = run(steps)
            res[who].append((time.perf_counter() - t0, unit_act(model, img)))
            t, act = res[who][-1]
            print(f"vis  {who:<10s} run {i + 1}: {t:6.1f} s  activation {act:.3f}")
    ref = max(float(vl.activations(model, model.prepare(n), LAYER)[0, UNIT].mean()) for n in vl.sample_names())
    (tv, av), (tl, al) = ([statistics.median(x) for x in zip(*res[k], strict=True)] for k in runs)
    return [
        f"vis  {LAYER}:{UNIT}, {steps} steps, 128 px, median of {repeats}: visionlens {tv:.1f} s  lucent {tl:.1f} s  "
        f"lucent/visionlens {tl / tv:.2f}x {'OK' if tl >= tv else 'SLOWER'}",
        f"vis  activation: visionlens {av:.3f} ({av / ref:.2f}x samples' max)  lucent {al:.3f} ({al / ref:.2f}x)  "
        f"samples' max {ref:.3f}  {'OK' if av > al else 'LOWER'}",
    ]


class TutorialLoss:
    """PyTorch tutorial's loss: network truncated after the last loss layer, plain Gram matrices
    divided by their element count, MSE, style weight 1e6, content weight 1."""

    def __init__(self, model: vl.Model, net: nn.Module, content: torch.Tensor, style: torch.Tensor) -> None:
        self.stages = [("conv_stem", net.conv_stem), ("bn1", net.bn1)]
        self.stages += [(f"blocks.{i}", b) for i, b in enumerate(net.blocks)]
        self.style_layers, self.normalize = style_layers(model), model.preprocessing.normalize
        with torch.no_grad():
            self.content_target = self.features(content)[LAYER]
            self.gram_targets = {n: self.gram(f) for n, f in self.features(style).items() if n in self.style_layers}

    def features(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        want, out, x = {*self.style_layers, LAYER}, {}, self.normalize(img)
        for name, module in self.stages:
            x = module(x)
            if name in want:
                out[name] = x
                if len(out) == len(want):
                    break
        return out

    @staticmethod
    def gram(f: torch.Tensor) -> torch.Tensor:
        a, b, c, d = f.shape
        g = f.reshape(a * b, c * d)
        return g @ g.t() / (a * b * c * d)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        f = self.features(img)
        style = sum(F.mse_loss(self.gram(f[n]), self.gram_targets[n]) for n in self.style_layers)
        return 1e6 * style + F.mse_loss(f[LAYER], self.content_target)


def run_tutorial(model: vl.Model, net: nn.Module, content: torch.Tensor, style: torch.Tensor, n: int) -> Curve:
    t0, curve = time.perf_counter(), []
    loss_fn = TutorialLoss(model, net, content, style)
    img = content.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([img])

    def closure() -> torch.Tensor:
        with torch.no_grad():
            img.clamp_(0, 1)
        opt.zero_grad()
        loss = loss_fn(img)
        loss.backward()
        curve.append((time.perf_counter() - t0, float(loss)))
        return loss

    while len(curve) < n:
        opt.step(closure)
    return curve


def run_visionlens(model: vl.Model, net: nn.Module, content: torch.Tensor, style: torch.Tensor, n: int) -> Curve:
    """visionlens's engine on the tutorial's own objective (same layers, plain Gram, same weights),
    with its decorrelated Fourier parameterization and L-BFGS (strong-Wolfe line search)."""
    yard, curve, excluded = TutorialLoss(model, net, content, style), [], 0.0  # the yardstick, off the clock

    def tutorial_objective(s: State) -> torch.Tensor:
        st = sum(F.mse_loss(yard.gram(s.acts[n]), yard.gram_targets[n]) for n in yard.style_layers)
        return -(1e6 * st + F.mse_loss(s.acts[LAYER], yard.content_target))  # the engine maximizes

    objective = Objective(tutorial_objective, "tutorial loss", [*yard.style_layers, LAYER])

    def frame(step: int, img: torch.Tensor) -> None:
        nonlocal excluded
        t = time.perf_counter()
        with torch.no_grad():
            curve.append((t - t0 - excluded, float(yard(img))))
        excluded += time.perf_counter() - t

    t0 = time.perf_counter()
    synthesize(
        model, objective, init=model.to_input(content), steps=n, lr=1.0, optimizer="lbfgs", param="fourier",
        transforms=None, redirect_steps=0, seed=0, save_every=1, on_frame=frame,
    )  # fmt: skip
    return curve


def style_bench(model: vl.Model, closures: int, steps: int) -> list[str]:
    content, style = image_tensor("chelsea", 256), image_tensor("coffee", 256)
    hw = tuple(content.shape[-2:])  # style resized as style_transfer does it, so that both get the same style
    style = F.interpolate(style, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    net = copy.deepcopy(model.net).eval().requires_grad_(False)  # the tutorial freezes the network
    run_tutorial(model, net, content, style, 2)  # warm-up, untimed
    run_visionlens(model, net, content, style, 2)
    tut = run_tutorial(model, net, content, style, closures)
    print(f"style tutorial  {len(tut)} closures {tut[-1][0]:6.1f} s  loss {tut[0][1]:.4g} -> {tut[-1][1]:.4g}")
    vlc = run_visionlens(model, net, content, style, steps)
    low = min(loss for _, loss in vlc)
    print(f"style visionlens {len(vlc)} steps {vlc[-1][0]:6.1f} s  loss -> {vlc[-1][1]:.4g} (lowest {low:.4g})")
    target, what = tut[-1][1], "the tutorial's final loss"
    lines = []
    if low > target:
        lines.append(
            f"style visionlens never reaches the tutorial's final loss {target:.4g} in {steps} steps "
            f"(final losses: tutorial {tut[-1][1]:.4g}, visionlens {vlc[-1][1]:.4g})"
        )
        target, what = max(low, min(loss for _, loss in tut)), "the lowest loss both reach"
    t_tut, t_vl = (next(t for t, loss in c if loss <= target) for c in (tut, vlc))
    ok = "OK" if t_vl <= t_tut / 2 else "SLOW (> 1/2)"
    lines.append(
        f"style 256 px, time to {what} ({target:.4g}, tutorial's loss): tutorial {t_tut:.1f} s  "
        f"visionlens {t_vl:.1f} s  tutorial/visionlens {t_tut / t_vl:.2f}x {ok}"
    )
    return lines


MEMORY_CODE = """
import resource, sys, torch, visionlens as vl
torch.set_num_threads(int(sys.argv[2]))
m = vl.load_model()
c, s = m.prepare("chelsea", 512), m.prepare("coffee", 512)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = vl.style_transfer(m, c, s, steps=int(sys.argv[1]))
print(base / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, tuple(r.images.shape))
"""


# A child spawned straight from this (large) process inherits its ru_maxrss through exec; one
# spawned from a small launcher starts clean.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def memory_bench(steps: int, threads: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-W", "ignore", "-c", MEMORY_CODE, str(steps), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(maxsplit=2)
    msg = f"memory style transfer {out[2].strip()}, {steps} steps: peak RSS {float(out[1]):.0f} MB"
    return [f"{msg} (after loading model and images {float(out[0]):.0f} MB)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps everywhere")
    ap.add_argument("--only", choices=["vis", "style", "memory"], help="run one part only")
    ap.add_argument("--repeats", type=int, default=1, help="feature-visualization runs per library (default 1)")
    ap.add_argument("--steps", type=int, default=None, help="feature-visualization steps (default 512, quick 64)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(args.threads)
    model = vl.load_model()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {model.name}, "
        f"load average {os.getloadavg()[0]:.2f} (timings need an otherwise idle machine)"
    )
    lines: list[str] = []
    parts: dict[str, Callable[[], list[str]]] = {
        "vis": lambda: vis_bench(model, args.steps or (64 if args.quick else 512), args.repeats),
        "style": lambda: style_bench(model, *((40, 30) if args.quick else (300, 150))),
        "memory": lambda: memory_bench(5 if args.quick else 20, args.threads),
    }
    for name, part in parts.items():
        if args.only in (None, name):
            lines += part()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
