"""Which map to trust, on the bundled canvas models: for every attribution method, the pointing
game on held-out digit canvases (does the map's maximum fall on the digit, Zhang et al. 2016,
2-px tolerance) and the mean deletion / insertion AUC of the true class's probability
(Petsiuk et al. 2018), with the time per image. Prints the README's table (markdown):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/which_map.py [--n 200] [--metric-n 100] [--steps 32]

Held-out canvases hold held-out digits; nothing here was used to choose a method's settings.
"""

from __future__ import annotations

import argparse
import time

import torch

import visionlens as vl
from visionlens.attribution import attribution, available_methods, deletion_insertion
from visionlens.canvas import CANVAS_PREPROCESSING, heldout_canvases, pointing_game

# the blank canvas in model-input units: occlusion erases a window to blank
BLANK = float(CANVAS_PREPROCESSING.normalize(torch.zeros(3, 1, 1))[0])
OPTIONS = {"occlusion": {"window": 4}, "ig": {"steps": 32}, "smoothgrad": {"samples": 16}}


def measure(spec: str, n: int, metric_n: int, steps: int) -> list[tuple[str, float, float, float, float]]:
    model = vl.load_model(spec)
    c = heldout_canvases().subset(slice(0, n))
    x, y = c.tensor(), torch.from_numpy(c.labels)
    rows = []
    for method in [*available_methods(model), "random"]:
        t0 = time.perf_counter()
        if method == "random":  # the baseline every method must beat
            maps = torch.rand(x.shape[0], *x.shape[-2:], generator=torch.Generator().manual_seed(0))
        else:
            opts = OPTIONS.get(method, {})
            parts = [attribution(model, x[i : i + 50], method, y[i : i + 50], **opts) for i in range(0, n, 50)]
            maps = torch.cat(parts)
        per_image = (time.perf_counter() - t0) / n
        hits = float(pointing_game(maps, c.boxes, tolerance=2).mean())
        d, ins = deletion_insertion(model, x[:metric_n], maps[:metric_n], y[:metric_n], steps=steps, batch_size=128)
        rows.append((method, hits, float(d.auc.mean()), float(ins.auc.mean()), per_image))
        print(
            f"{spec:18s} {method:12s} pointing {hits:6.1%}  deletion {d.auc.mean():.3f}  "
            f"insertion {ins.auc.mean():.3f}  {per_image * 1e3:7.1f} ms/image",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="held-out canvases for the pointing game")
    ap.add_argument("--metric-n", type=int, default=100, help="canvases for deletion / insertion")
    ap.add_argument("--steps", type=int, default=32, help="points on each deletion / insertion curve")
    args = ap.parse_args()
    torch.manual_seed(0)
    tables = {spec: measure(spec, args.n, args.metric_n, args.steps) for spec in ("digits_canvas_cnn", "digits_vit")}
    print("\n| method | pointing game CNN | ViT | deletion AUC CNN | ViT | insertion AUC CNN | ViT |")
    print("|---|---|---|---|---|---|---|")
    names = list(dict.fromkeys(r[0] for rows in tables.values() for r in rows))
    for name in names:
        got = {spec: {r[0]: r for r in rows}.get(name) for spec, rows in tables.items()}

        def cell(spec: str, i: int, pct: bool = False, got: dict = got) -> str:
            r = got[spec]
            if r is None:
                return "-"
            return f"{r[i]:.1%}" if pct else f"{r[i]:.3f}"

        cnn, vit = "digits_canvas_cnn", "digits_vit"
        print(
            f"| {name} | {cell(cnn, 1, True)} | {cell(vit, 1, True)} | {cell(cnn, 2)} | {cell(vit, 2)} | "
            f"{cell(cnn, 3)} | {cell(vit, 3)} |"
        )
    print(f"\n(pointing game on {args.n} held-out canvases; AUCs on {args.metric_n}, {args.steps} steps)")


if __name__ == "__main__":
    main()
