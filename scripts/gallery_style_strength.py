"""Draw the style-transfer strength series into docs/gallery/style-strength.png: chelsea in the
style of coffee at strengths 0 to 1, each panel captioned with its style distance (the
smoothed-Gram loss), its colour-histogram distance to the style image and the top-1 class; the
numbers are printed as a Markdown table too (the README's style section shows them):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/gallery_style_strength.py [-o PATH] [--size 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import visionlens as vl
from visionlens.render import Panel, hwc, save_figure
from visionlens.synthesis.style import colour_histogram_distance, style_distance

OUT = Path(__file__).resolve().parents[1] / "docs" / "gallery" / "style-strength.png"
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--content", default="chelsea")
    ap.add_argument("--style", default="coffee")
    args = ap.parse_args()
    model = vl.load_model()
    content = model.prepare(args.content, size=args.size)
    style = model.prepare(args.style, size=args.size)
    style01 = model.to_image(style)

    def top1(pictures: torch.Tensor) -> int:
        with torch.no_grad():
            return int(model.net(model.to_input(pictures)).argmax())

    want = top1(model.to_image(content))
    panels = [Panel(hwc(style01[0]), f"style: {args.style}")]
    print("| strength | style distance | colour-histogram distance | top-1 class | time |")
    print("|---|---|---|---|---|")
    for s in STRENGTHS:
        t = time.perf_counter()
        res = vl.style_transfer(model, content, style, strength=s, seed=0)
        dt = time.perf_counter() - t
        img = res.images
        d, h, c = style_distance(model, img, style01), colour_histogram_distance(img, style01), top1(img)
        label = model.short_label(c)
        print(f"| {s:g} | {d:.3f} | {h:.3f} | {label}{'' if c == want else ' (changed)'} | {dt:.0f} s |")
        panels.append(Panel(hwc(img[0]), f"strength {s:g}: style {d:.2f}, colour {h:.2f}\ntop-1 {label}"))
    save_figure(
        args.output,
        panels,
        f"{model.name}: {args.content} in the style of {args.style}, {args.size} px, 200 Adam steps each",
        cols=3,
        panel_size=4.2,
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
