"""Results that show themselves in a notebook: `show(...)` knows each kind of result the
Python API returns and gives an object with `_repr_html_` and `_repr_png_`, which Jupyter
draws (HTML) and keeps as a picture (PNG) in the notebook file.

- an `Explanation` (`vl.explain`), or plain attribution maps with their images;
- a synthesis `Result` (feature visualization, DeepDream, ...) with its parameters;
- `Neighbors` (the neighbour grid), top patches (`{unit: [Patch, ...]}`);
- an `Embedding`: the report's interactive map (pan, zoom, hover shows the thumbnail),
  inlined with its data and viewer script, no network;
- the layer table (`vl.layer_table`), and plain pictures (tensors, arrays, PIL images).

Results stay what they were (tensors, dataclasses): `show` only draws them. Inside IPython,
`import visionlens` also registers these drawings for the result classes themselves (see
`visionlens._ipython`), so a cell ending in `vl.neighbors(...)` draws the grid."""

from __future__ import annotations

import base64
import html
import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .errors import ArgumentError
from .render import colorize, grid, hwc, overlay, signed_rgb, thumbnail

if TYPE_CHECKING:
    from .dataset.engine import PassResult
    from .dataset.views import Embedding, Neighbors, Patch
    from .layers import LayerInfo
    from .models import Model
    from .synthesis.engine import Result

GOOD, BAD = (0.10, 0.60, 0.31), (0.84, 0.19, 0.15)  # frames: same label as the query, or not
_CSS = """
.vl-show { font: 13px/1.4 system-ui, sans-serif; color: #1d2733; }
.vl-show .vl-row { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.vl-show figure { margin: 0; text-align: center; }
.vl-show figure img { display: block; image-rendering: auto; }
.vl-show figure img.px { image-rendering: pixelated; }
.vl-show figcaption { font-size: 11px; color: #56606b; max-width: 240px; }
.vl-show .vl-frame { border: 3px solid transparent; }
.vl-show .vl-good { border-color: #1a9850; } .vl-show .vl-bad { border-color: #d73027; }
.vl-show table { border-collapse: collapse; font-size: 12px; }
.vl-show th, .vl-show td { text-align: left; padding: 2px 10px; border-bottom: 1px solid #dde3ea; white-space: nowrap; }
.vl-show td { font-family: ui-monospace, Menlo, Consolas, monospace; }
.vl-show .vl-note { color: #56606b; margin: 4px 0; }
.vl-show .embedmap { position: relative; height: 26rem; max-width: 48rem; background: #fff;
  border: 1px solid #dde3ea; cursor: grab; outline: none; touch-action: none; }
.vl-show .embedmap canvas { display: block; width: 100%; height: 100%; }
.vl-show .vl-tip { position: absolute; pointer-events: none; z-index: 5; display: none; background: #fff;
  border: 1px solid #dde3ea; border-radius: 6px; padding: 4px; box-shadow: 0 4px 14px rgba(0,0,0,.18);
  max-width: 12rem; font-size: 11px; }
.vl-show .vl-tip img { display: block; width: 6rem; height: 6rem; object-fit: contain; image-rendering: pixelated; }
.vl-show .vl-thumb { position: relative; width: 6rem; height: 6rem; overflow: hidden; margin-bottom: 2px; }
.vl-show .vl-legend { position: absolute; right: 6px; top: 6px; background: rgba(255,255,255,.88);
  border-radius: 4px; padding: 2px 6px; font-size: 11px; max-height: 90%; overflow: auto; }
.vl-show .vl-legend span { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; }
"""


@dataclass
class Shown:
    """A drawn result: HTML for the notebook and, where it has one, a PNG picture.

    Attributes:
        html: a self-contained HTML fragment (pictures as data: URIs, no network).
        png: the PNG bytes of a picture of the same result, or None (a table).
        text: a one-line description (the plain-text repr).

    Example:
        >>> s = vl.show(torch.rand(1, 3, 32, 32))
        >>> s.png[:4], "<img" in s.html
        (b'\\x89PNG', True)
    """

    html: str
    png: bytes | None
    text: str

    def _repr_html_(self) -> str:
        return self.html

    def _repr_png_(self) -> bytes | None:
        return self.png

    def __repr__(self) -> str:
        return self.text

    def save(self, path: str | Path) -> Path:
        """Write the picture (`.png`) or the HTML page (`.html`) atomically.

        Args:
            path: the file; its suffix decides what is written.

        Returns:
            The path written.

        Example:
            >>> vl.show(torch.rand(1, 3, 32, 32)).save("shown.png").suffix
            '.png'
        """
        from .io import atomic_file

        path = Path(path)
        if path.suffix.lower() == ".html":
            data = f"<!doctype html><meta charset='utf-8'><title>visionlens</title>{self.html}".encode()
        elif path.suffix.lower() == ".png" and self.png is not None:
            data = self.png
        else:
            raise ArgumentError(f"{path}: save as .html{' or .png' if self.png is not None else ''}")
        with atomic_file(path) as f:
            f.write(data)
        return path


# ---------------------------------------------------------------- pictures as bytes


def png_bytes(picture: np.ndarray) -> bytes:
    """An (H, W, 3) RGB picture in [0, 1] as 8-bit PNG bytes.

    Args:
        picture: (H, W, 3) (or (3, H, W)) floats in [0, 1].

    Returns:
        The PNG file's bytes.

    Example:
        >>> from visionlens.display import png_bytes
        >>> png_bytes(np.zeros((4, 4, 3)))[:4]
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    Image.fromarray((hwc(picture) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _uri(picture: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _img(picture: np.ndarray, caption: str = "", width: int | None = None, cls: str = "") -> str:
    h, w = picture.shape[:2]
    width = width or max(w, min(224, 8 * w))  # small pictures (8x8 digits) are enlarged
    pixelated = " px" if width >= 2 * w else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img class="{cls}{pixelated}" src="{_uri(picture)}" width="{width}" '
        f'height="{round(width * h / w)}" alt="{html.escape(caption)}">{cap}</figure>'
    )


def _page(body: str, note: str = "") -> str:
    note_html = f'<p class="vl-note">{html.escape(note)}</p>' if note else ""
    return f'<div class="vl-show"><style>{_CSS}</style>{body}{note_html}</div>'


def _framed(tile: np.ndarray, colour: tuple[float, float, float] | None, width: int = 3) -> np.ndarray:
    out = np.array(tile, np.float32, copy=True)
    if colour is not None:
        out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


# ---------------------------------------------------------------- each kind


def curves_svg(fractions: np.ndarray, deletion: np.ndarray, insertion: np.ndarray, w: int = 200, h: int = 150) -> str:
    """Deletion (red) and insertion (blue) curves as a small inline SVG, scaled to the larger
    score.

    Args:
        fractions: (S,) fraction of pixels changed at each point.
        deletion: (S,) scores while deleting.
        insertion: (S,) scores while inserting.
        w: width in px.
        h: height in px.

    Returns:
        An `<svg>` element.

    Example:
        >>> from visionlens.display import curves_svg
        >>> curves_svg(np.array([0, 1.0]), np.array([1.0, 0]), np.array([0, 1.0])).startswith("<svg")
        True
    """
    top = max(float(np.max(deletion)), float(np.max(insertion)), 1e-9)
    m = 6

    def line(scores: np.ndarray, colour: str) -> str:
        pts = " ".join(
            f"{m + f * (w - 2 * m):.1f},{h - m - max(0.0, s) / top * (h - 2 * m):.1f}"
            for f, s in zip(fractions, scores, strict=True)
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'

    frame = f'<rect x="{m}" y="{m}" width="{w - 2 * m}" height="{h - 2 * m}" fill="#fff" stroke="#c9d1da"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        f"{frame}{line(deletion, '#d73027')}{line(insertion, '#3b6ea5')}</svg>"
    )


def _maps(maps: torch.Tensor | np.ndarray, images: Any, model: Model | None, title: str) -> Shown:
    """(B, H, W) maps, over their images when given."""
    a = np.asarray(maps.detach().float().cpu() if isinstance(maps, torch.Tensor) else maps, np.float32)
    if a.ndim == 2:
        a = a[None]
    pictures = _pictures(images, model) if images is not None else None
    if pictures is not None and len(pictures) != len(a):
        raise ArgumentError(f"{len(a)} maps but {len(pictures)} images: give one image per map")
    tiles = []
    for i, m in enumerate(a):
        if pictures is not None:
            if pictures[i].shape[:2] != m.shape:
                raise ArgumentError(f"map {i} is {m.shape}, its image {pictures[i].shape[:2]}: they must match")
            tiles += [pictures[i], overlay(pictures[i], m)]
        else:
            tiles.append(colorize(m))
    cols = 2 if pictures is not None else min(len(tiles), 6)
    body = "".join(_img(t) for t in tiles)
    return Shown(_page(f'<div class="vl-row">{body}</div>', title), png_bytes(grid(tiles, cols, pad=4)), title)


def _pictures(images: Any, model: Model | None) -> list[np.ndarray]:
    """Images as (H, W, 3) pictures in [0, 1]: model input is un-normalized by `model`; files,
    names and PIL images are read."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        x = x[None] if x.ndim == 3 else x
        if model is not None and (x.min() < 0 or x.max() > 1):
            x = model.to_image(x.to(model.device)).cpu()
        return [hwc(t) for t in x]
    if isinstance(images, np.ndarray):
        a = images.astype(np.float32)
        a = a / 255.0 if a.max() > 1 else a
        return [hwc(t) for t in (a if a.ndim == 4 else a[None])]
    from .images import load_image

    seq = images if isinstance(images, (list, tuple)) else [images]
    return [np.asarray(load_image(s), np.float32) / 255.0 for s in seq]


def _tensor(x: torch.Tensor | np.ndarray, images: Any, model: Model | None, title: str) -> Shown:
    """A tensor: (B, H, W) maps, (B, 3, H, W) pictures in [0, 1], model input (with `model`)
    or signed attributions."""
    t = torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x.detach().float().cpu()
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim in (2, 3) and not (t.ndim == 3 and t.shape[0] == 3 and images is None and model is None):
        return _maps(t, images, model, title)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise ArgumentError(f"cannot draw a tensor of shape {tuple(t.shape)}: give (B, H, W) maps or (B, 3, H, W)")
    if float(t.min()) >= 0 and float(t.max()) <= 1:
        tiles = [hwc(p) for p in t]
    elif model is not None:
        tiles = [hwc(p) for p in model.to_image(t.to(model.device)).cpu()]
    else:  # signed attributions (guided backprop, Integrated Gradients)
        tiles = [signed_rgb(g) for g in t]
    if images is not None:
        tiles = [p for pair in zip(_pictures(images, model), tiles, strict=True) for p in pair]
    body = "".join(_img(p) for p in tiles)
    png = png_bytes(grid(tiles, min(len(tiles), 6), pad=4))
    return Shown(_page(f'<div class="vl-row">{body}</div>', title), png, title or f"{len(tiles)} pictures")


def _synthesis(r: Result, title: str) -> Shown:
    tiles = [hwc(p) for p in r.images.detach().float().cpu()]
    params = dict(getattr(r, "params", {}) or {})
    params["steps done"] = r.steps
    if r.values:
        params["final objective"] = f"{r.values[-1]:.4g}"
    if r.failure:
        params["stopped"] = r.failure
    if r.interrupted:
        params["stopped"] = "interrupted"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in params.items())
    body = f'<div class="vl-row">{"".join(_img(p, f"image {i}") for i, p in enumerate(tiles))}</div>'
    body += f"<table>{rows}</table>"
    text = title or f"{len(tiles)} synthesized image(s), {r.steps} steps"
    return Shown(_page(body, title), png_bytes(grid(tiles, min(len(tiles), 8), pad=4)), text)


def _neighbors(nb: Neighbors, title: str, size: int = 96) -> Shown:
    coll = nb.result.collection
    rows_html, tiles = [], []
    k = nb.feature.shape[1]
    for q, (img, name, label) in enumerate(zip(nb.query_images, nb.query_names, nb.query_labels, strict=True)):
        qt = thumbnail(np.asarray(img, np.float32) / 255.0, size)
        cells = [_img(qt, f"query {Path(name).name}", size)]
        row_tiles = [qt, np.ones_like(qt)]
        for j in range(k):
            r, d = int(nb.feature[q, j]), float(nb.feature_dist[q, j])
            other = coll.labels[r] if coll.labels is not None else -1
            same = None if label < 0 or other < 0 else other == label
            t = thumbnail(np.asarray(coll.read(r), np.float32) / 255.0, size)
            cls = "vl-frame" + ("" if same is None else " vl-good" if same else " vl-bad")
            cap = f"{coll.label_name(r) or Path(coll.paths[r]).name} · {d:.3f}"
            cells.append(_img(t, cap, size, cls))
            row_tiles.append(_framed(t, None if same is None else GOOD if same else BAD))
        rows_html.append(f'<div class="vl-row">{"".join(cells)}</div>')
        tiles += row_tiles
    note = (
        title
        or f"{k} nearest neighbours in {nb.layer}'s features (cosine distance){'; ' + nb.approx if nb.approx else ''}"
    )
    png = png_bytes(grid(tiles, k + 2, pad=3))
    return Shown(_page("".join(rows_html), note), png, note)


def _patches(patches: Mapping[int, Sequence[Patch]], title: str, size: int = 80) -> Shown:
    rows_html, tiles = [], []
    k = max((len(p) for p in patches.values()), default=1)
    for unit, ps in patches.items():
        cells = [f'<figure style="width:60px"><figcaption>unit {int(unit)}</figcaption></figure>']
        row = []
        for p in ps:
            t = thumbnail(p.image, size)
            cells.append(_img(t, f"{p.value:.3g}", size))
            row.append(t)
        row += [np.ones((size, size, 3), np.float32)] * (k - len(row))
        tiles += row
        rows_html.append(f'<div class="vl-row">{"".join(cells)}</div>')
    note = title or "top dataset patches of each unit, with the unit's maximum on the image"
    return Shown(_page("".join(rows_html), note), png_bytes(grid(tiles, k, pad=3)), note)


def _layer_table(table: Sequence[LayerInfo], title: str) -> Shown:
    head = "".join(f"<th>{c}</th>" for c in ("layer", "type", "output shape", "kind", "receptive field", "stride"))
    rows = []
    for info in table:
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        kind = info.layout.describe() if info.layout is not None else "-"
        rf, lay = info.field, info.layout
        if rf is not None:
            field, stride = rf.size_text(), str(rf.stride[0])
        elif lay is not None and lay.kind == "tokens" and lay.stride:
            field, stride = "global", str(round(lay.stride))
        else:
            field, stride = "-", "-"
        cells = (info.name, info.type, shape, kind, field, stride)
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    body = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    text = title or f"layer table: {len(table)} layers"
    return Shown(_page(body, title), None, text)


def _viewer_js() -> str:
    return resources.files("visionlens.report").joinpath("static/embedmap.js").read_text(encoding="utf-8")


def _embedding(
    emb: Embedding, dataset: PassResult | None, labels: Sequence[Any] | None, title: str, max_points: int, thumb: int
) -> Shown:
    from .plots import scatter
    from .report.mapdata import SHEET, MapData, atlas_layout, atlas_pages, jpeg_bytes

    n = len(emb.coords)
    rows = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
    coll = dataset.collection if dataset is not None else None
    if coll is not None and len(coll) != n:
        raise ArgumentError(
            f"the map has {n} points but the dataset {len(coll)} images: give the pass it was made from"
        )
    names: list[str] = []
    ints: list[int] | None = None
    if labels is not None:
        if len(labels) != n:
            raise ArgumentError(f"{len(labels)} labels for {n} points")
        names = sorted({str(v) for v in labels})
        ints = [names.index(str(v)) for v in labels]
    elif coll is not None and coll.labels is not None and coll.classes:
        names, ints = list(coll.classes), [int(v) for v in coll.labels]
    groups = np.array([ints[r] if ints is not None else -1 for r in rows], np.int64)
    texts = [
        (Path(coll.paths[r]).name if coll is not None else f"point {r}")
        + (f" · {names[ints[r]]}" if ints is not None and ints[r] >= 0 else "")
        for r in rows
    ]
    data = MapData(emb.coords[rows], labels=texts, groups=groups if ints is not None else None, group_names=names)
    if coll is not None:  # thumbnails as sprite sheets, inlined: one data: URI per 1,024 points at most

        def pictures(js: np.ndarray) -> np.ndarray:
            return np.stack([thumbnail(np.asarray(coll.read(int(rows[j])), np.float32) / 255.0, thumb) for j in js])

        cols, per, _ = atlas_layout(len(rows), thumb, min(SHEET, 32 * thumb))
        files = [
            "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(sheet)).decode("ascii")
            for _, sheet in atlas_pages(len(rows), pictures, thumb, cols * thumb)
        ]
        data.atlas = {"files": files, "tile": thumb, "cols": cols, "per": per}
    map_id = "vlmap-" + uuid.uuid4().hex[:12]
    head = title or f"{emb.params} · trustworthiness {emb.trustworthiness:.3f}"
    if emb.knn_accuracy is not None:
        head += f" · 5-NN accuracy {emb.knn_accuracy:.1%}"
    if len(rows) < n:
        head += f" · {len(rows)} of {n} points shown"
    body = (
        f'<div class="embedmap" data-map="{map_id}" tabindex="0" aria-label="{html.escape(head)}: drag to pan, '
        f'wheel to zoom, hover a point"></div>'
        f"<script>{data.script(map_id, head)}</script>"
        f"<script>{_viewer_js()}</script>"
    )
    picture = scatter(None, emb.coords, ints, names, head)
    return Shown(_page(body, head), png_bytes(picture), head)


# ---------------------------------------------------------------- the one entry point


def show(
    obj: Any,
    images: Any = None,
    *,
    model: Model | None = None,
    dataset: PassResult | None = None,
    labels: Sequence[Any] | None = None,
    title: str = "",
    max_points: int = 2000,
    thumb: int = 48,
) -> Shown:
    """Draw any result of the Python API for a notebook (HTML) and as a picture (PNG).

    Args:
        obj: an `Explanation`; attribution maps (B, H, W) (over `images` when given); a
            (B, 3, H, W) tensor (pictures in [0, 1], model input with `model`, else signed
            attributions); a synthesis `Result`; `Neighbors`; top patches
            (`{unit: [Patch]}`); an `Embedding` (interactive map); the layer table; a PIL
            image or an array.
        images: the images the maps are of: model input (with `model`), pictures in [0, 1],
            or files / sample names.
        model: the model, to turn model input back into pictures.
        dataset: for an `Embedding`: the `PassResult` it was made from (thumbnails, labels).
        labels: for an `Embedding`: one label per point (colours and the legend).
        title: a line shown under the result.
        max_points: an `Embedding` shows at most this many points (a seeded sample).
        thumb: an `Embedding`'s thumbnails, in px.

    Returns:
        A `Shown`: Jupyter draws its HTML; `.png` holds the picture, `.save(path)` writes it.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> shown = vl.show(vl.gradcam(model, x), x, model=model, title="Grad-CAM")
        >>> shown.png[:4], "Grad-CAM" in shown.html
        (b'\\x89PNG', True)
    """
    from .dataset.views import Embedding, Neighbors
    from .layers import LayerInfo
    from .synthesis.engine import Result

    if isinstance(obj, Shown):
        return obj
    if callable(getattr(obj, "_repr_html_", None)) and callable(getattr(obj, "_repr_png_", None)):
        return Shown(obj._repr_html_(), obj._repr_png_(), repr(obj)[:200])  # draws itself (an Explanation)
    if isinstance(obj, Result):
        return _synthesis(obj, title)
    if isinstance(obj, Neighbors):
        return _neighbors(obj, title)
    if isinstance(obj, Embedding):
        return _embedding(obj, dataset, labels, title, max_points, thumb)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, list) for v in obj.values()):
        return _patches(obj, title)
    if isinstance(obj, LayerInfo):
        obj = [obj]
    if isinstance(obj, Sequence) and obj and all(isinstance(v, LayerInfo) for v in obj):
        return _layer_table(obj, title)
    if isinstance(obj, Image.Image):
        obj = np.asarray(obj.convert("RGB"), np.float32) / 255.0
    if isinstance(obj, np.ndarray) and obj.ndim == 3 and obj.shape[-1] == 3:
        obj = torch.from_numpy(np.ascontiguousarray(obj.transpose(2, 0, 1), np.float32))
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return _tensor(obj, images, model, title)
    raise ArgumentError(f"cannot show a {type(obj).__name__}; see `visionlens.show` for what it draws")


__all__ = ["Shown", "curves_svg", "png_bytes", "show"]
