"""Grad-CAM and occlusion on a Swin transformer, where the answer is known: trains a tiny timm
Swin on 32-px digit canvases (`visionlens.canvas`, the same training digits and schedule as
digits_vit), then draws Grad-CAM, HiResCAM and LayerCAM on held-out canvases and prints each
method's pointing game per stage, and occlusion's (its incremental plan checked against whole
copies). The maps come from a layer name alone: timm's Swin stages are
channels-last (N, H, W, C) and visionlens reads them as maps with no reshape code.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gallery_swin.py      # about 5 minutes on 2 cores

Writes docs/gallery/swin-gradcam.png. The network is not bundled (it exists to check the
maps); its weights go to a temporary file only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from visionlens import render
from visionlens.attribution import cam, occlusion
from visionlens.canvas import CANVAS_PREPROCESSING, CANVAS_SIZE, canvas_accuracy, heldout_canvases, pointing_game
from visionlens.digits import DIGIT_LABELS
from visionlens.models import Model

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"


def swin_net() -> torch.nn.Module:
    """A tiny timm Swin for 32-px canvases: 2-px patches (a 16x16 grid), windows of 4, three
    stages (16x16, 8x8, 4x4), width 32-64-128."""
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(
        img_size=CANVAS_SIZE,
        patch_size=2,
        in_chans=3,
        num_classes=10,
        embed_dim=32,
        depths=(2, 2, 2),
        num_heads=(2, 4, 8),
        window_size=4,
        mlp_ratio=2.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n", type=int, default=200, help="held-out canvases for the pointing game")
    parser.add_argument("--weights", type=Path, default=None, help="reuse (or keep) the trained weights here")
    args = parser.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("train", Path(__file__).with_name("train_digits_vit.py"))
    assert spec is not None and spec.loader is not None
    train_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_mod)
    torch.manual_seed(0)
    if args.weights is not None and args.weights.is_file():
        net = swin_net()
        net.load_state_dict(torch.load(args.weights, weights_only=True))
    else:
        net = train_mod.train(swin_net(), args.epochs, 2e-3, 0.05, copies=1, seed=0)
        if args.weights is not None:
            torch.save(net.state_dict(), args.weights)
    model = Model(net.eval(), CANVAS_PREPROCESSING, list(DIGIT_LABELS), "tiny Swin on canvases")
    test = heldout_canvases()
    print(f"held-out canvas accuracy {canvas_accuracy(net, test):.3f}")
    c = test.subset(slice(0, args.n))
    x, y = c.tensor(), torch.from_numpy(c.labels)
    best: tuple[float, str, str] = (-1.0, "", "")
    for layer in ("layers.0", "layers.1", "layers.2", "norm"):
        for method in ("gradcam", "hirescam", "layercam"):
            maps = cam(model, x, y, method=method, layer=layer)
            hits = float(pointing_game(maps, c.boxes, tolerance=2).mean())
            print(f"{method:9s} {layer:9s} pointing game {hits:.1%} of {len(y)}")
            if method == "gradcam" and hits > best[0]:
                best = (hits, method, layer)
    hits, method, layer = best
    # occlusion, 4 px windows at stride 2 (225 a canvas): the first blocks recompute only the
    # attention windows a window changes; checked here against whole copies on a trained Swin
    stats: dict = {}
    occ = occlusion(model, x, y, window=4, stride=2, stats=stats)
    occ_hits = float(pointing_game(occ, c.boxes, tolerance=2).mean())
    whole = occlusion(model, x[:16], y[:16], window=4, stride=2, incremental=False)
    gap = float((occ[:16] - whole).abs().max() / whole.abs().max())
    print(f"occlusion pointing game {occ_hits:.1%} of {len(y)}; {stats['mode']} ({stats['why']});")
    print(f"  cuts {stats['cuts']}; against whole copies on 16 canvases: max diff {gap:.1e} of the map")
    show = test.subset(slice(0, 8))
    xs = show.tensor()
    maps = cam(model, xs, torch.from_numpy(show.labels), method=method, layer=layer)
    pics = model.to_image(xs)
    panels = []
    for heats, name in [(maps, "Grad-CAM"), (occ[:8], "occlusion")]:
        for i in range(len(xs)):
            heat = (heats[i] - heats[i].median()).clamp(min=0)  # the flat background (the median) shows no colour
            canvas = 0.12 + 0.88 * render.hwc(pics[i])  # dark grey, not black: the map's blues stay visible
            over = render.overlay(canvas, heat, "jet", 0.7)
            # captions on the top row only: the rows are named in the title
            caption = "" if name == "occlusion" else f"digit {show.labels[i]}"
            panels.append(render.Panel(render.upscale(over, 128), caption))
    out = render.save_figure(
        GALLERY / "swin-gradcam.png",
        panels,
        f"A tiny Swin on {args.n} held-out canvases. Top: Grad-CAM at {layer} (channels-last), pointing game"
        f" {hits:.1%}. Bottom: occlusion (window 4, stride 2), {occ_hits:.1%}",
        cols=8,
        panel_size=1.9,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
