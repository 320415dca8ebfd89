"""Benchmark visionlens' Score-CAM and Ablation-CAM against pytorch-grad-cam's.

Same process, model, image, layer (the model's last spatial layer), target and batch size;
the two implementations alternate within each repeat (so that load on the machine hits both
alike) and the medians are compared. The goal is a ratio (visionlens / pytorch-grad-cam)
of at most 0.8.

    OMP_NUM_THREADS=1 python benchmarks/cams.py [--model bundled|resnet18] [--size 112]
        [--batch-size 32] [--repeats 3] [--threads 1] [--only scorecam|ablationcam]

`bundled` is the trained EfficientNet-Lite0 on "chelsea"; `resnet18` is torchvision's with
random weights on a random image (no dead channels to skip: the worst case for Score-CAM).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import torch  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import AblationCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import visionlens as vl  # noqa: E402
from visionlens.attribution import cams  # noqa: E402


def timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call, in seconds."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def setup(name: str, size: int) -> tuple[vl.Model, torch.Tensor]:
    """The model and a (1, 3, H, W) input."""
    if name == "bundled":
        model = vl.load_model()
        return model, model.prepare("chelsea", size=size)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=1000).eval()
    return vl.as_model(net), torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["bundled", "resnet18"], default="bundled")
    ap.add_argument("--size", type=int, default=112, help="input size in px (the shorter side)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["scorecam", "ablationcam"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, x = setup(args.model, args.size)
    layer = vl.last_spatial_layer(model, x.shape[-1])
    module = vl.resolve_layer(model.net, layer)
    target = int(model.logits(x)[0].argmax())
    with torch.inference_mode():  # warm up the kernels both use
        model.net(x.repeat(args.batch_size, 1, 1, 1))
    print(
        f"{model.name}, input {tuple(x.shape[-2:])}, layer {layer!r}, batch size {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.repeats}",
        flush=True,
    )

    def peer_score() -> None:
        cam = ScoreCAM(model.net, [module])
        cam.batch_size = args.batch_size
        cam(x, [ClassifierOutputTarget(target)])
        cam.activations_and_grads.release()

    def peer_ablation() -> None:
        cam = AblationCAM(model.net, [module], batch_size=args.batch_size)
        cam(x, [ClassifierOutputTarget(target)])
        cam.activations_and_grads.release()

    runs = {
        "scorecam": (cams.scorecam, peer_score),
        "ablationcam": (cams.ablationcam, peer_ablation),
    }
    for name, (ours, peer) in runs.items():
        if args.only and name != args.only:
            continue
        t_ours, t_peer = [], []
        for _ in range(args.repeats):
            t_ours.append(timed(lambda ours=ours: ours(model, x, target, layer=layer, batch_size=args.batch_size)))
            t_peer.append(timed(peer))
        a, b = statistics.median(t_ours), statistics.median(t_peer)
        print(
            f"{name:12s} visionlens {a:7.2f} s   pytorch-grad-cam {b:7.2f} s   ratio {a / b:.2f}x  (goal <= 0.8x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
