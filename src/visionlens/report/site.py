"""The report folder: cached figures and arrays, embedding-map data files, pages, assets.

Every figure is keyed on what made it (model, inputs, method and parameters): a sidecar
`<name>.json` beside its PNG and .npy records the key, so a rerun with the same inputs reuses
the files instead of recomputing them. Every file is written atomically; nothing that this
module did not write is ever touched."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_file, fingerprint, save_array
from ..render import hwc, save_image, to_numpy
from .core import EmbeddingMap, Figure
from .mapdata import MapData, Thumbs, atlas_layout, atlas_pages, jpeg_bytes

CACHE_VERSION = 1
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def slugify(text: str, taken: set[str] | None = None, key: str | None = None) -> str:
    """A file-name-safe version of `text`; a short hash of `key` (default: `text`) is appended
    when characters had to be replaced or the slug is already in `taken`, so different names
    never share files. The result is added to `taken`.

    Args:
        text: any name (a layer, a file name, a label).
        taken: slugs already used; the new one is added.
        key: what the hash is taken of (e.g. a resolved path, so two files of the same name
            in different folders get different slugs).

    Returns:
        At most 48 characters of [A-Za-z0-9_.-], plus "-" and 8 hex digits when needed.

    Example:
        >>> from visionlens.report import slugify
        >>> slugify("blocks.3"), slugify("my photo.jpg")
        ('blocks.3', 'my-photo.jpg-7b79c977')
        >>> taken = set()
        >>> slugify("blocks.3", taken), slugify("blocks.3", taken)
        ('blocks.3', 'blocks.3-43e645f6')
    """
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:48] or "item"
    digest = fingerprint(key or text)[:8]
    slug = base
    if slug != text or (taken is not None and slug in taken):
        slug = f"{base}-{digest}"
    n = 2
    while taken is not None and slug in taken:
        slug, n = f"{base}-{digest}-{n}", n + 1
    if taken is not None:
        taken.add(slug)
    return slug


def _to_numpy(a: Any) -> np.ndarray:
    return to_numpy(a) if isinstance(a, torch.Tensor) else np.asarray(a)


@dataclass
class Stats:
    """Figures and arrays of one run: `computed` made (their stems in `computed_names`),
    `reused` taken from the files of an earlier run."""

    computed: int = 0
    reused: int = 0
    computed_names: list[str] = field(default_factory=list)


class Site:
    """The output folder of one report. Figures live under `figures/`, embedding-map data
    under `data/`, CSS and JS under `assets/`, pages at the top.

    Args:
        root: the report folder (made when the first file is written).
        model_key: the model's fingerprint, part of every figure's key.
        status: called with the stem of each figure about to be computed (progress).

    Example:
        >>> from visionlens.report import Site
        >>> site = Site("report", "my-model")
        >>> noise = lambda: np.random.default_rng(0).random((8, 8, 3))
        >>> fig = site.figure("demo/noise", {"seed": 0}, noise, title="Noise", caption="Uniform noise.")
        >>> fig.png, fig.shape
        ('figures/demo/noise.png', (8, 8, 3))
        >>> site.figure("demo/noise", {"seed": 0}, noise, title="Noise", caption="...").png, site.stats.reused
        ('figures/demo/noise.png', 1)
    """

    def __init__(
        self, root: str | os.PathLike[str], model_key: str, status: Callable[[str], None] | None = None
    ) -> None:
        self.root = Path(root)
        self.model_key = model_key
        self.stats = Stats()
        self._status = status or (lambda _text: None)

    # ------------------------------------------------------------ paths and keys

    def _check(self, stem: str) -> str:
        if not _SAFE_PATH.match(stem) or ".." in stem.split("/"):
            raise ValueError(f"figure name {stem!r} must be a relative path of [A-Za-z0-9_.-] parts (use slugify)")
        return stem

    def key(self, stem: str, params: Mapping[str, Any], depends: Sequence[str] = ()) -> str:
        """The cache key of a figure: the fingerprint of the model, its stem, its parameters and
        the fingerprints of its inputs."""
        return fingerprint(CACHE_VERSION, self.model_key, stem, dict(params), list(depends))

    def _sidecar(self, rel: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / rel).read_text())
        except (OSError, ValueError):
            return None

    def _write_json(self, rel: str, data: Mapping[str, Any]) -> None:
        with atomic_file(self.root / rel) as f:
            f.write(json.dumps(data, indent=1, default=str).encode())

    def status(self, text: str) -> None:
        """Show `text` as what is running now (in the progress display)."""
        self._status(text)

    # ------------------------------------------------------------ cached results

    def cached(
        self, stem: str, params: Mapping[str, Any], compute: Callable[[], Any], depends: Sequence[str] = ()
    ) -> np.ndarray:
        """A raw array under `figures/<stem>.npy`, computed once per distinct key."""
        stem = self._check(stem)
        key = self.key(stem, params, depends)
        npy = f"figures/{stem}.npy"
        meta = self._sidecar(f"figures/{stem}.json")
        if meta is not None and meta.get("key") == key and (self.root / npy).is_file():
            try:
                arr = np.load(self.root / npy, allow_pickle=False)
                self.stats.reused += 1
                return arr
            except (OSError, ValueError):
                pass
        self.status(stem)
        arr = _to_numpy(compute())
        save_array(self.root / npy, arr)
        self._write_json(f"figures/{stem}.json", {"key": key, "params": dict(params), "npy": npy})
        self.stats.computed += 1
        self.stats.computed_names.append(stem)
        return arr

    def cached_json(
        self, stem: str, params: Mapping[str, Any], compute: Callable[[], Any], depends: Sequence[str] = ()
    ) -> Any:
        """A JSON-able value under `figures/<stem>.json`, computed once per distinct key."""
        stem = self._check(stem)
        key = self.key(stem, params, depends)
        meta = self._sidecar(f"figures/{stem}.json")
        if meta is not None and meta.get("key") == key and "value" in meta:
            self.stats.reused += 1
            return meta["value"]
        self.status(stem)
        value = compute()
        self._write_json(f"figures/{stem}.json", {"key": key, "params": dict(params), "value": value})
        self.stats.computed += 1
        self.stats.computed_names.append(stem)
        return json.loads(json.dumps(value, default=str))

    def figure(
        self,
        stem: str,
        params: Mapping[str, Any],
        compute: Callable[[], Any],
        draw: Callable[[np.ndarray], np.ndarray] | None = None,
        *,
        title: str,
        caption: str,
        depends: Sequence[str] = (),
        css: str = "",
    ) -> Figure:
        """A captioned picture: `compute()` returns the raw array (saved as .npy), `draw(raw)`
        the (H, W, 3) picture in [0, 1] (saved as PNG; default: the raw array as an image).
        Both are skipped when the files of the same key exist. `params` are shown in the
        caption and are part of the key; `depends` (fingerprints of inputs) only in the key."""
        stem = self._check(stem)
        key = self.key(stem, params, depends)
        png, npy, side = f"figures/{stem}.png", f"figures/{stem}.npy", f"figures/{stem}.json"
        meta = self._sidecar(side)
        if meta is not None and meta.get("key") == key and (self.root / png).is_file() and (self.root / npy).is_file():
            self.stats.reused += 1
            return self._figure(png, npy, title, caption, params, meta, css)
        self.status(stem)
        arr = _to_numpy(compute())
        picture = (draw or hwc)(arr)
        save_array(self.root / npy, arr)
        save_image(self.root / png, picture)
        meta = {
            "key": key,
            "params": dict(params),
            "width": int(picture.shape[1]),
            "height": int(picture.shape[0]),
            "shape": list(arr.shape),
        }
        self._write_json(side, meta)  # last: the key only vouches for complete files
        self.stats.computed += 1
        self.stats.computed_names.append(stem)
        return self._figure(png, npy, title, caption, params, meta, css)

    @staticmethod
    def _figure(
        png: str, npy: str, title: str, caption: str, params: Mapping[str, Any], meta: Mapping[str, Any], css: str
    ) -> Figure:
        return Figure(
            png=png,
            npy=npy,
            title=title,
            caption=caption,
            params=dict(params),
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            shape=tuple(meta.get("shape", ())),
            css=css,
        )

    # ------------------------------------------------------------ embedding maps

    def embedding_map(
        self,
        map_id: str,
        points: Sequence[Mapping[str, Any]] | None = None,
        *,
        title: str,
        caption: str,
        params: Mapping[str, Any] | None = None,
        data: MapData | None = None,
        thumbs: Thumbs | None = None,
        thumb_px: int = 64,
        thumbs_stem: str | None = None,
    ) -> EmbeddingMap:
        """Write the data of an interactive map: `points` are dicts with x, y, label, thumb
        (a path relative to the report folder) and optionally group (colour); or, for many
        points, `data` holds them as arrays. The data goes to `data/<map_id>.js` (assigning
        `window.VL_MAPS[map_id]`, compact: base64 typed arrays; it loads from file://) and the
        coordinates to `data/<map_id>.npy`. With `thumbs`, every point's thumbnail is packed
        into JPEG sprite sheets `figures/<thumbs_stem>-<k>.jpg` (1,024 thumbnails of 64 px
        each) that the viewer loads on demand.

        Args:
            map_id: a flat name, unique in the report.
            points: the points as dicts (or None with `data`).
            title: a short title.
            caption: what it shows and how it was made.
            params: method and parameters, shown under the caption.
            data: the points as a `MapData` (instead of `points`).
            thumbs: rows -> (len(rows), thumb_px, thumb_px, 3) thumbnails of those points.
            thumb_px: the thumbnails' side, in px.
            thumbs_stem: where the sheets go under figures/; name it after what they show
                (e.g. a fingerprint of the images), and existing sheets are reused; default:
                maps/<map_id>-thumbs, always rewritten.

        Returns:
            The `EmbeddingMap` to put in a `Section`.

        Example:
            >>> from visionlens.report import Site
            >>> from visionlens.report.mapdata import MapData
            >>> site = Site("report", "my-model")
            >>> grey = lambda rows: np.full((len(rows), 64, 64, 3), 128, np.uint8)
            >>> m = site.embedding_map("big", data=MapData(np.zeros((5000, 2))), thumbs=grey, title="t", caption="c")
            >>> m.data, len(list((site.root / "figures" / "maps").glob("big-thumbs-*.jpg")))  # 1,024 a sheet
            ('data/big.js', 5)
        """
        self._check(map_id)
        if "/" in map_id:
            raise ValueError("map ids are flat names")
        if (points is None) == (data is None):
            raise ValueError("give the points either as `points` or as `data`")
        data = data if data is not None else MapData.from_points(points or [])
        if thumbs is not None:
            stem = self._check(thumbs_stem or f"maps/{map_id}-thumbs")
            cols, per, count = atlas_layout(len(data.xy), thumb_px)
            files = [f"figures/{stem}-{k}.jpg" for k in range(count)]
            if thumbs_stem is None or not all((self.root / f).is_file() for f in files):
                for k, sheet in atlas_pages(len(data.xy), thumbs, thumb_px):
                    with atomic_file(self.root / files[k]) as f:
                        f.write(jpeg_bytes(sheet))
            data.atlas = {"files": files, "tile": thumb_px, "cols": cols, "per": per}
        rel, npy = f"data/{map_id}.js", f"data/{map_id}.npy"
        self.write_text(rel, data.script(map_id, title))
        save_array(self.root / npy, data.xy)
        return EmbeddingMap(map_id, rel, title, caption, dict(params or {}), npy)

    # ------------------------------------------------------------ plain files

    def write_text(self, rel: str, text: str) -> None:
        """Write a text file atomically, leaving it alone when the content is the same."""
        path = self.root / rel
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        with atomic_file(path) as f:
            f.write(text.encode("utf-8"))
