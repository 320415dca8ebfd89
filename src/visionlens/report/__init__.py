"""The visionlens report: a static HTML "microscope" of a model, written into one folder.

    from visionlens.report import build_report
    build_report("efficientnet_lite0", ["chelsea", "photos/"], ["blocks.2", "blocks.4"], "report/", quick=True)

Pages: index.html (model, layer table, images with their top-5 classes, unreadable files),
one page per image (activations, gradient, SmoothGrad, guided backprop, Grad-CAM, occlusion for
two classes), one per layer (filters, Gram matrix, feature visualizations of the first units,
DeepDream and inversion), units.html (each unit's feature visualization beside a slot for its
top dataset patches) and synthesis.html (texture synthesis, style transfer). The site is plain
files: it works from file:// and any static server, and requests nothing from outside.

Every picture is a `Figure`: a PNG, its raw array (.npy) and a JSON sidecar beside it under
figures/, keyed on the model, the inputs and the parameters, so a rerun reuses it. Files are
written atomically, pages after all figures, index.html last.

Extending the report
--------------------
A technique package adds to the report with an `Extension`, passed to
`build_report(..., extensions=[...])`:

    from visionlens.report import Extension, Figure, Page, ReportContext, Section

    def dataset_page(ctx: ReportContext) -> list[Page]:
        grid = ctx.site.figure(
            "dataset/nn-grid",                        # -> figures/dataset/nn-grid.{png,npy,json}
            {"method": "nearest neighbours", "layer": "blocks.5", "k": 8, "dataset": ctx.dataset},
            compute=lambda: neighbours_array(),       # the raw array (saved as .npy)
            draw=lambda raw: picture_of(raw),         # (H, W, 3) in [0, 1] (saved as PNG)
            title="Nearest neighbours", caption="What it shows and how it was made.",
            depends=[dataset_fingerprint],            # inputs: part of the cache key, not shown
        )
        tsne = ctx.site.embedding_map(                # -> data/tsne.js (+ .npy): interactive map
            "tsne", [{"x": .1, "y": .2, "label": "cat", "thumb": "figures/dataset/thumbs/0.png", "group": "cat"}],
            title="t-SNE of blocks.5 features", caption="...", params={"perplexity": 30},
        )
        return [Page("dataset.html", "Dataset", "Dataset", [Section("Neighbours", figures=[grid]),
                                                            Section("Maps", maps=[tsne])])]

    def top_patches(ctx: ReportContext, layer: str, units: Sequence[int]) -> dict[int, list[Figure]]:
        return {u: [ctx.site.figure(f"dataset/patches-{layer}-{u}-{i}", ...) for i in range(9)] for u in units}

    build_report(model, images, extensions=[Extension("dataset", pages=[dataset_page],
                                                      unit_patches=top_patches)], dataset="digits")

- `pages`: builders `(ctx) -> list[Page]`, run after the core pages; a page's `group` is its
  heading in the navigation ("Dataset" comes right after "Report").
- `overview`: builders `(ctx) -> list[Section]` appended to index.html.
- `unit_patches`: `(ctx, layer, units) -> {unit: [Figure, ...]}` fills the slot named
  `UNIT_PATCHES_SLOT` ("unit-patches") of each unit card on units.html; without it the slot
  says that no dataset pass was run.
- A `Section` holds `figures`, `cards`, a `table` and embedding `maps`; a page that shows a
  map loads assets/embedmap.js and the map's data file by itself. Point thumbnails are paths
  relative to the report folder (pages are flat, so they resolve the same from every page).
- `ctx.site.cached(stem, params, compute)` caches a raw array without a picture (features);
  `ctx.site.status(text)` shows what is running in the progress bar.
- The CLI passes `--dataset NAME` as `ctx.dataset` and asks
  `visionlens.report.dataset_page.extension(name)` for the Extension (see visionlens.cli.report).
"""

from ..io import fingerprint
from .build import Report, build_report
from .context import DEFAULT_IMAGES, QUICK_IMAGES, Extension, ReportContext, ReportImage
from .core import Card, EmbeddingMap, Figure, Link, Page, Section, Settings, Slot, Table
from .pages_layers import UNIT_PATCHES_SLOT
from .site import Site, slugify

__all__ = [
    "DEFAULT_IMAGES",
    "QUICK_IMAGES",
    "UNIT_PATCHES_SLOT",
    "Card",
    "EmbeddingMap",
    "Extension",
    "Figure",
    "Link",
    "Page",
    "Report",
    "ReportContext",
    "ReportImage",
    "Section",
    "Settings",
    "Site",
    "Slot",
    "Table",
    "build_report",
    "fingerprint",
    "slugify",
]
