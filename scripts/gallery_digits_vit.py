"""Draw where the bundled `digits_vit` looks, on the first held-out canvases, into
docs/gallery/digits-vit-rollout.png: the canvas with the digit's box (green), Grad-CAM on the last
block's norm1, attention rollout, occlusion (4-px window = one patch), and the class token's
attention in each head of the last block:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gallery_digits_vit.py [-o PATH] [-n 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import visionlens as vl
from visionlens.attribution import attention_maps, attention_rollout, gradcam, occlusion
from visionlens.canvas import CANVAS_PREPROCESSING, heldout_canvases
from visionlens.render import Panel, overlay, save_figure

OUT = Path(__file__).resolve().parents[1] / "docs" / "gallery" / "digits-vit-rollout.png"
SIZE = 128  # px per panel: canvases are enlarged nearest-neighbour, maps bilinearly


def _big(maps: torch.Tensor) -> np.ndarray:
    return F.interpolate(maps[:, None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()


def _boxed(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The (SIZE, SIZE, 3) picture with the canvas box drawn in green."""
    out = image.copy()
    f = SIZE // 32
    y0, y1, x0, x1 = (int(v) * f for v in box)
    out[y0:y1, [x0, x1 - 1]] = out[[y0, y1 - 1], x0:x1] = (0.1, 0.9, 0.2)
    return out


def _panel(image: np.ndarray, title: str) -> Panel:
    # a white strip on top: save_figure leaves little room between rows for the next row's titles
    strip = np.ones((SIZE // 8, SIZE, 3))
    return Panel(np.concatenate([strip, image]), title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    parser.add_argument("-n", type=int, default=2, help="how many held-out canvases (the first ones)")
    args = parser.parse_args()
    model = vl.load_model("digits_vit")
    c = heldout_canvases().subset(slice(0, args.n))
    x, target = c.tensor(), torch.from_numpy(c.labels)
    blank = float(CANVAS_PREPROCESSING.normalize(torch.zeros(3, 1, 1))[0])
    with torch.inference_mode():
        pred = model.net(x).argmax(1)
    maps = {
        "Grad-CAM": _big(gradcam(model, x, target, layer="blocks.3.norm1")),
        "attention rollout": _big(attention_rollout(model, x)),
        "occlusion": _big(occlusion(model, x, target, window=4, stride=4, baseline=blank).clamp_min(0)),
    }
    heads = attention_maps(model, x, block=-1)
    panels = []
    for i in range(len(c)):
        gray = np.kron(c.images[i] / 255.0, np.ones((SIZE // 32, SIZE // 32)))
        rgb = np.repeat(gray[..., None], 3, -1)
        title = f"digit {c.labels[i]}, predicted {int(pred[i])}"
        panels.append(_panel(_boxed(rgb, c.boxes[i]), title))
        panels += [_panel(_boxed(overlay(rgb, m[i]), c.boxes[i]), name) for name, m in maps.items()]
        head_maps = _big(heads[i])
        panels += [_panel(overlay(rgb, h), f"head {k}") for k, h in enumerate(head_maps)]
    cols = 4 + heads.shape[1]
    heading = (
        "digits_vit on held-out canvases: Grad-CAM (blocks.3.norm1), attention rollout, occlusion "
        "(4-px window = one patch), the class token's attention per head of the last block"
    )
    save_figure(args.out, panels, title=heading, cols=cols, panel_size=2.4)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
