"""Shared by the report tests: tiny settings, an image folder with awkward files, and a fake
dataset extension that exercises the extension point (a page with an embedding map, and the
units' top-patch slots)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionlens.images import sample_image
from visionlens.report import Extension, Figure, Page, ReportContext, Section, Settings

EVIL = "<img src=x onerror=alert(1)>.png"
LAYER = "blocks.2"

TINY = Settings(
    units=2,
    vis_steps=3,
    vis_size=48,
    channels=8,
    smoothgrad_samples=2,
    occlusion_window=112,
    occlusion_stride=112,
    metric_steps=4,
    sanity_groups=2,
    dream_octaves=1,
    dream_steps=1,
    invert_steps=2,
    invert_size=48,
    textures=("brick",),
    texture_size=48,
    texture_steps=2,
    styles=(("chelsea", "coffee"),),
    style_size=48,
    style_steps=2,
)


def image_folder(folder: Path) -> Path:
    """Two good images (one named like an XSS attack) and two files that are not images."""
    folder.mkdir(parents=True, exist_ok=True)
    sample_image("chelsea").resize((160, 120)).save(folder / EVIL)
    sample_image("coffee").resize((160, 120)).save(folder / "coffee.jpg")
    good = (folder / "coffee.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def dataset_page(ctx: ReportContext) -> list[Page]:
    """A stand-in for the dataset page: thumbnails as figures, and a map of them."""
    rng = np.random.default_rng(0)
    points, thumbs = [], []
    for i in range(12):
        colour = rng.random(3)
        fig = ctx.site.figure(
            f"fake-dataset/thumb-{i}",
            {"method": "synthetic thumbnail", "index": i},
            lambda c=colour: np.broadcast_to(c, (24, 24, 3)).copy(),
            title=f"sample {i}",
            caption="A flat colour standing in for a dataset image.",
        )
        thumbs.append(fig)
        points.append(
            {
                "x": float(i % 4),
                "y": float(i // 4),
                "label": f"sample {i} <b>",
                "thumb": fig.png,
                "group": f"class {i % 3}",
            }
        )
    emb = ctx.site.embedding_map(
        "fake-map", points, title="A synthetic map", caption="Twelve points on a grid.", params={"method": "grid"}
    )
    return [
        Page(
            "dataset.html",
            "Dataset",
            "Dataset",
            [Section("Map", maps=[emb], id="map"), Section("Samples", figures=thumbs, id="samples", compact=True)],
        )
    ]


def unit_patches(ctx: ReportContext, layer: str, units: Sequence[int]) -> dict[int, list[Figure]]:
    return {
        u: [
            ctx.site.figure(
                f"fake-dataset/patch-{layer}-{u}",
                {"unit": u, "layer": layer},
                lambda u=u: np.full((16, 16, 3), 0.2 + 0.3 * u),
                title=f"patch of unit {u}",
                caption="A fake top patch.",
            )
        ]
        for u in units
    }


FAKE_DATASET = Extension("fake dataset", pages=[dataset_page], unit_patches=unit_patches)
