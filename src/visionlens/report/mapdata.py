"""The data of an interactive embedding map, compact enough for a million points.

Coordinates travel as base64 float32 (x, y interleaved), colour groups as base64 uint16 codes,
labels as one JSON list; thumbnails are packed into sprite sheets (JPEG, `SHEET` px wide) that
the viewer (`static/embedmap.js`) loads when one of their points is first hovered. A million
points with no labels make a 13 MB .js file; the viewer draws them from file://."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SHEET = 2048  # px: the width of a sprite sheet (every browser decodes far larger)
NO_GROUP = 65535

Thumbs = Callable[[np.ndarray], np.ndarray]
"""rows -> (len(rows), T, T, 3) thumbnails: uint8, or float in [0, 1]."""


def b64(array: np.ndarray, dtype: str) -> str:
    """An array as base64 of its little-endian bytes, for a typed array in the viewer.

    Args:
        array: any numeric array (flattened in C order).
        dtype: the numpy type to store it as, e.g. "<f4" or "<u2".

    Returns:
        ASCII base64 text.

    Example:
        >>> from visionlens.report.mapdata import b64
        >>> b64(np.array([1.0, 2.0]), "<f4")
        'AACAPwAAAEA='
    """
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


@dataclass
class MapData:
    """What one map shows: point positions, and optionally labels, colour groups and thumbnails.

    Attributes:
        xy: (N, 2) float32 coordinates.
        labels: one hover text per point, or None ("point i").
        groups: (N,) group number per point (-1: none), or None.
        group_names: the name of each group number (legend and colours follow this order).
        thumbs: one image URL per point (None for none), or None.
        atlas: sprite sheets of every point's thumbnail: {"files", "tile", "cols", "per"}
            (`atlas_pages` makes them), or None.

    Example:
        >>> from visionlens.report.mapdata import MapData
        >>> data = MapData(np.zeros((3, 2), np.float32), labels=["a", "b", "c"])
        >>> sorted(data.payload("m", "A map"))
        ['groups', 'id', 'labels', 'n', 'title', 'xy']
    """

    xy: np.ndarray
    labels: Sequence[str] | None = None
    groups: np.ndarray | None = None
    group_names: Sequence[str] = ()
    thumbs: Sequence[str | None] | None = None
    atlas: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self.xy = np.asarray(self.xy, np.float32).reshape(-1, 2)
        n = len(self.xy)
        if not np.isfinite(self.xy).all():
            raise ValueError("map coordinates must be finite")
        for name, seq in (("labels", self.labels), ("groups", self.groups), ("thumbs", self.thumbs)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{len(seq)} {name} for {n} points")
        if self.groups is not None:
            g = np.asarray(self.groups, np.int64)
            if len(g) and (g.max() >= max(1, len(self.group_names)) or g.min() < -1):
                raise ValueError(f"group numbers must be -1 or below {len(self.group_names)}")
            self.groups = g

    @classmethod
    def from_points(cls, points: Sequence[Any]) -> MapData:
        """From dicts with x, y and optionally label, thumb (a URL) and group (any name;
        colours in order of first appearance).

        Args:
            points: the point dicts.

        Returns:
            The `MapData`.

        Example:
            >>> from visionlens.report.mapdata import MapData
            >>> MapData.from_points([{"x": 0, "y": 1, "group": "cat"}]).group_names
            ['cat']
        """
        names: dict[str, int] = {}
        groups = np.full(len(points), -1, np.int64)
        for i, p in enumerate(points):
            if p.get("group") is not None:
                groups[i] = names.setdefault(str(p["group"]), len(names))
        thumbs = [p.get("thumb") or None for p in points]
        return cls(
            np.array([[float(p["x"]), float(p["y"])] for p in points], np.float32).reshape(-1, 2),
            labels=[str(p.get("label", "") or "") for p in points],
            groups=groups if names else None,
            group_names=list(names),
            thumbs=thumbs if any(thumbs) else None,
        )

    def payload(self, map_id: str, title: str) -> dict[str, Any]:
        """The JSON-able object the viewer reads from `window.VL_MAPS[map_id]`.

        Args:
            map_id: the map's id.
            title: its title.

        Returns:
            A dict with n, xy (base64 float32) and, where present, group (base64 uint16),
            groups, labels, thumbs and atlas.

        Example:
            >>> from visionlens.report.mapdata import MapData
            >>> MapData(np.ones((1, 2)), groups=np.array([0]), group_names=["a"]).payload("m", "")["group"]
            'AAA='
        """
        out: dict[str, Any] = {"id": map_id, "title": title, "n": len(self.xy), "xy": b64(self.xy, "<f4")}
        if self.groups is not None:
            out["group"] = b64(np.where(self.groups < 0, NO_GROUP, self.groups), "<u2")
        out["groups"] = [str(g) for g in self.group_names]
        if self.labels is not None:
            out["labels"] = [str(v) for v in self.labels]
        if self.thumbs is not None:
            out["thumbs"] = list(self.thumbs)
        if self.atlas is not None:
            out["atlas"] = self.atlas
        return out

    def script(self, map_id: str, title: str) -> str:
        """The .js data file: assigns the payload to `window.VL_MAPS[map_id]` (loads from
        file://). JSON with every non-ASCII character escaped (U+2028/9 included) and `<`
        escaped, so it is safe inline in a <script> too.

        Args:
            map_id: the map's id.
            title: its title.

        Returns:
            JavaScript text.

        Example:
            >>> from visionlens.report.mapdata import MapData
            >>> MapData(np.zeros((1, 2))).script("m", "t")[:46]
            '(window.VL_MAPS = window.VL_MAPS || {})["m"] ='
        """
        body = json.dumps(self.payload(map_id, title), ensure_ascii=True, separators=(",", ":"))
        body = body.replace("<", "\\u003c")
        return f"(window.VL_MAPS = window.VL_MAPS || {{}})[{json.dumps(map_id)}] = {body};\n"


def atlas_layout(n: int, tile: int, sheet: int = SHEET) -> tuple[int, int, int]:
    """How `n` thumbnails of `tile` px are packed into sheets `sheet` px wide.

    Args:
        n: thumbnails.
        tile: their side, in px.
        sheet: a sheet's width (and at most its height), in px.

    Returns:
        (columns per sheet, thumbnails per sheet, number of sheets).

    Example:
        >>> from visionlens.report.mapdata import atlas_layout
        >>> atlas_layout(1_000_000, 64)
        (32, 1024, 977)
    """
    if tile < 1 or tile > sheet:
        raise ValueError(f"a thumbnail of {tile} px does not fit a sheet of {sheet} px")
    cols = sheet // tile
    per = cols * cols
    return cols, per, max(1, math.ceil(n / per))


def atlas_pages(n: int, thumbs: Thumbs, tile: int, sheet: int = SHEET) -> Iterator[tuple[int, np.ndarray]]:
    """The sprite sheets of `n` thumbnails, one at a time (memory: one sheet).

    Args:
        n: thumbnails (points 0..n-1).
        thumbs: rows -> (len(rows), tile, tile, 3) thumbnails, uint8 or float in [0, 1].
        tile: their side, in px.
        sheet: a sheet's width, in px.

    Returns:
        An iterator of (sheet number, (H, W, 3) uint8 picture); the last sheet has only the
        rows it needs.

    Example:
        >>> from visionlens.report.mapdata import atlas_pages
        >>> grey = lambda rows: np.full((len(rows), 8, 8, 3), 128, np.uint8)
        >>> [(k, p.shape) for k, p in atlas_pages(5, grey, 8, sheet=16)]
        [(0, (16, 16, 3)), (1, (8, 16, 3))]
    """
    cols, per, count = atlas_layout(n, tile, sheet)
    for k in range(count):
        rows = np.arange(k * per, min(n, (k + 1) * per))
        t = np.asarray(thumbs(rows))
        if t.shape != (len(rows), tile, tile, 3):
            raise ValueError(f"thumbnails of shape {t.shape}, expected {(len(rows), tile, tile, 3)}")
        if t.dtype != np.uint8:
            t = (np.clip(t, 0, 1) * 255).round().astype(np.uint8)
        r = math.ceil(len(rows) / cols)
        full = np.full((r * cols, tile, tile, 3), 255, np.uint8)
        full[: len(rows)] = t
        yield k, full.reshape(r, cols, tile, tile, 3).transpose(0, 2, 1, 3, 4).reshape(r * tile, cols * tile, 3)


def jpeg_bytes(picture: np.ndarray, quality: int = 90) -> bytes:
    """An (H, W, 3) uint8 picture as JPEG bytes (sprite sheets of photographs: a tenth of PNG).

    Args:
        picture: (H, W, 3) uint8.
        quality: JPEG quality, 1-95.

    Returns:
        The JPEG file's bytes.

    Example:
        >>> from visionlens.report.mapdata import jpeg_bytes
        >>> jpeg_bytes(np.zeros((8, 8, 3), np.uint8))[:2]
        b'\\xff\\xd8'
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


__all__ = ["MapData", "atlas_layout", "atlas_pages", "b64", "jpeg_bytes"]
