"""What the live explorer computes, on one model held in memory: requests are checked here (a
bad one is a `VisionlensError` with one line, before any work is queued), the work runs on the
worker thread, and every result is cached on disk in the server's own folder, keyed like the
report's figures (the model's fingerprint, the image and the parameters).

Files live in two folders under the server's root and nowhere else: `uploads/` (each image as
it was decoded, re-encoded as PNG and named by the hash of the uploaded bytes) and `results/`
(PNG pictures and the JSON of each result, named by hash). Requests name images and results
only by those hashes (or a bundled sample's name), so no request reaches any other file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..errors import ArgumentError, ImageError, did_you_mean
from ..io import atomic_file, fingerprint, model_fingerprint
from ..probe import Probe

if TYPE_CHECKING:
    import torch

    from ..models import Model
    from .jobs import Job

UPLOAD_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF",
                "image/bmp": "BMP", "image/tiff": "TIFF"}  # fmt: skip
MAX_UPLOAD_PIXELS = 40_000_000  # a server decodes less than a file on the command line may hold
IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
RESULT_FILE = re.compile(r"^[0-9a-f]{40}(-[a-z0-9]{1,12})?\.png$")
CACHE_VERSION = 1
Work = Callable[["Job"], dict[str, Any]]


def default_root() -> Path:
    """The server's own folder: $VISIONLENS_CACHE/serve, else ~/.cache/visionlens/serve.

    Returns:
        The folder (not created).

    Example:
        >>> from visionlens.serve.work import default_root
        >>> default_root().name
        'serve'
    """
    env = os.environ.get("VISIONLENS_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "visionlens"
    return base / "serve"


class Session:
    """The model, the optional dataset and the server's folders; checks requests and makes
    the work for the worker thread.

    Args:
        model: the one model in memory.
        root: the server's own folder (uploads and results).
        dataset: the dataset to search and take top patches from, or None.
        unit_steps: optimization steps of a unit's feature visualization (a request may ask
            for others).

    Example:
        >>> from visionlens.serve.work import Session
        >>> s = Session(vl.load_model("digits_cnn"), "/tmp/vl-serve", dataset="digits")
        >>> s.info()["dataset"]["images"]
        1797
    """

    def __init__(
        self, model: Model, root: str | os.PathLike[str], dataset: str | None = None, unit_steps: int = 96
    ) -> None:
        from ..attribution.methods import available_methods
        from ..dataset.sources import open_dataset
        from ..layers import last_spatial_layer, layer_table

        self.model = model
        self.root = Path(root)
        self.uploads = self.root / "uploads"
        self.results = self.root / "results"
        for folder in (self.uploads, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self.collection = open_dataset(dataset) if dataset is not None else None
        self.dataset = dataset
        self.unit_steps = unit_steps
        self.model_key = model_fingerprint(model.net, model.name)
        with Probe(model.net):  # dry runs in eval mode
            table = layer_table(model, fields=False)
            self.default_layer = last_spatial_layer(model)
        skip = ("Identity", "Dropout", "DropPath")  # outputs equal to their input's
        self.layers = {r.name: int(r.map_shape[0]) for r in table if r.is_map and r.map_shape and r.type not in skip}
        self.methods = available_methods(model)
        self.num_classes = self._classes()

    def _classes(self) -> int | None:
        """The number of classes the model's output has (None: not a classifier)."""
        import torch

        size = self.model.preprocessing.input_size
        with torch.no_grad(), Probe(self.model.net):
            out = self.model.net(torch.zeros(1, 3, size, size, device=self.model.device))
        return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else None

    # ------------------------------------------------------------ what the page needs first

    def info(self) -> dict[str, Any]:
        """What the page shows first: the model, its layers and methods, class names, samples.

        Returns:
            A JSON-able dict.
        """
        from ..images import sample_names

        coll = self.collection
        return {
            "model": self.model.name,
            "input_size": self.model.preprocessing.input_size,
            "layers": [{"name": n, "units": c} for n, c in self.layers.items()],
            "default_layer": self.default_layer,
            "methods": self.methods,
            "classes": list(self.model.labels),
            "samples": sample_names(),
            "dataset": None if coll is None else {"name": coll.name, "images": len(coll)},
        }

    # ------------------------------------------------------------ images

    def add_upload(self, data: bytes, content_type: str) -> dict[str, Any]:
        """Store an uploaded image after checking its type and decoding it with the guards of
        `load_image` (decompression bombs, truncated files), under a stricter pixel limit.

        Args:
            data: the uploaded bytes.
            content_type: the request's Content-Type.

        Returns:
            {"id", "width", "height"} of the stored image.
        """
        from ..images import load_image

        kind = content_type.split(";")[0].strip().lower()
        if kind not in UPLOAD_TYPES:
            raise ImageError(
                f"uploads must be images ({', '.join(sorted(UPLOAD_TYPES))}), not {kind or 'untyped data'}"
            )
        if not data:
            raise ImageError("the upload is empty")
        image_id = hashlib.sha256(data).hexdigest()[:32]
        final = self.uploads / f"{image_id}.png"
        if not final.exists():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(io.BytesIO(data)) as probe:
                        fmt, (w, h) = probe.format, probe.size
            except Exception:
                raise ImageError("the upload is not an image PIL can read (PNG, JPEG, WebP, ...)") from None
            if fmt not in UPLOAD_TYPES.values():
                raise ImageError(f"the upload is {fmt}, not one of {', '.join(sorted(UPLOAD_TYPES.values()))}")
            if w * h > MAX_UPLOAD_PIXELS:
                raise ImageError(f"the image has {w}x{h} pixels, more than this server decodes; downscale it first")
            tmp = self.uploads / f"tmp-{uuid.uuid4().hex}"
            try:
                tmp.write_bytes(data)
                img = load_image(tmp)  # the same guards as a file on the command line
            except ImageError as e:
                raise ImageError(str(e).replace(str(tmp), "the upload")) from None
            finally:
                tmp.unlink(missing_ok=True)
            with atomic_file(final) as f:
                img.save(f, format="PNG")
        with Image.open(final) as im:
            w, h = im.size
        return {"id": image_id, "width": w, "height": h}

    def image_source(self, image: Any) -> str:
        """What `load_image` reads for a request's image: an uploaded image's file, or a
        bundled sample's name.

        Args:
            image: an upload id (32 hex digits) or "sample:NAME".

        Returns:
            A path inside `uploads/`, or a sample name.
        """
        from ..images import sample_names

        if isinstance(image, str) and image.startswith("sample:") and image[7:] in sample_names():
            return image[7:]
        if isinstance(image, str) and IMAGE_ID.match(image):
            path = self.uploads / f"{image}.png"
            if path.is_file():
                return str(path)
            raise ArgumentError("unknown image: upload it again")
        raise ArgumentError("`image` must be an upload id or sample:NAME")

    def view_png(self, image: Any) -> Path:
        """The model's view of an image (resized and cropped) as a PNG file in `results/`."""
        from ..dataset.views import model_view
        from ..images import load_image

        src = self.image_source(image)
        path = self.results / f"{self._key('view', image)}.png"
        if not path.exists():
            self._save(path, model_view(self.model, load_image(src)))
        return path

    def result_file(self, name: str) -> Path:
        """A picture in `results/` by its file name (checked: hash names only).

        Args:
            name: the file name, as a result's JSON gives it.

        Returns:
            The path, which exists.
        """
        path = self.results / name
        if not RESULT_FILE.match(name) or not path.is_file():
            raise ArgumentError("no such result picture")
        return path

    # ------------------------------------------------------------ requests -> (key, work)

    def _key(self, *parts: Any) -> str:
        return fingerprint(CACHE_VERSION, self.model_key, *parts)[:40]

    def cached(self, key: str) -> dict[str, Any] | None:
        """The stored result of `key`, or None."""
        path = self.results / f"{key}.json"
        try:
            result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return result

    def _store(self, key: str, result: dict[str, Any]) -> dict[str, Any]:
        with atomic_file(self.results / f"{key}.json") as f:
            f.write(json.dumps(result).encode("utf-8"))
        return result

    def _save(self, path: Path, picture: np.ndarray) -> str:
        from ..display import png_bytes

        with atomic_file(path) as f:
            f.write(png_bytes(picture))
        return path.name

    def _layer(self, layer: Any) -> str:
        if layer in (None, ""):
            return self.default_layer
        if not isinstance(layer, str) or layer not in self.layers:
            raise ArgumentError(f"unknown layer {layer!r}{did_you_mean(str(layer), list(self.layers))}")
        return layer

    def _target(self, target: Any, versus: Any) -> tuple[Any, str]:
        """(the target spec, its text for the key) from the request's class names."""
        from ..attribution.targets import Contrast

        def one(v: Any) -> int | None:
            if v in (None, ""):
                return None
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise ArgumentError("`target` must be a class name or index")
            text = str(v).strip()
            return self.model.class_index(int(text) if text.isdigit() else text, self.num_classes)

        a, b = one(target), one(versus)
        if b is not None:
            if a == b:
                raise ArgumentError("the target and the class it is contrasted with are the same")
            return Contrast(a, b), f"{a}-{b}"
        return a, str(a)

    def _dataset_pass(self, job: Job, layer: str) -> Any:
        from ..dataset.engine import run_pass

        if self.collection is None:
            raise ArgumentError("no dataset: start the server with --dataset DIR")

        def on_batch(done: int, total: int) -> None:
            job.progress("dataset pass over " + self.collection.name, done, total)  # type: ignore[union-attr]

        job.progress("dataset pass over " + self.collection.name)
        return run_pass(self.model, self.collection, [layer], workers=0, on_batch=on_batch)

    def explain_request(self, p: dict[str, Any]) -> tuple[str, Work]:
        """Check an explain request: image, method, layer, target, versus, steps.

        Returns:
            (cache key, work for the worker).
        """
        from ..attribution.methods import CAM_METHODS

        src = self.image_source(p.get("image"))
        method = p.get("method") or "gradcam"
        if method not in self.methods:
            raise ArgumentError(f"unknown method {method!r}{did_you_mean(str(method), self.methods)}")
        layer = self._layer(p.get("layer"))
        target, target_key = self._target(p.get("target"), p.get("versus"))
        steps = _int(p, "steps", 20, 4, 100)
        cam_layer = layer if method in CAM_METHODS else None
        key = self._key("explain", p.get("image"), method, cam_layer, layer, target_key, steps)

        def work(job: Job) -> dict[str, Any]:
            from ..explanation import explain, top_units
            from ..render import colorize, overlay, upscale

            job.progress(f"{method} map", total=0)
            e = explain(self.model, src, method, target, layer=cam_layer, faithfulness=False)
            job.progress("deletion and insertion curves")
            from ..attribution.metrics import deletion_insertion

            x = self.model.prepare(src)
            dele, ins = deletion_insertion(self.model, x, e.map[None].to(self.model.device), target, steps=steps)
            job.progress(f"units of {layer}")
            units = top_units(self.model, x, layer, target, k=12)
            names = {"overlay": self._save(self.results / f"{key}-overlay.png", overlay(e.picture, e.map))}
            names["map"] = self._save(self.results / f"{key}-map.png", colorize(e.map))
            unit_list = []
            for u in units:
                a = u.activation.numpy()
                tile = upscale(colorize(np.maximum(a, 0), "viridis"), 64)
                name = self._save(self.results / f"{key}-u{u.unit}.png", tile)
                unit_list.append({"unit": u.unit, "contribution": round(u.contribution, 5), "file": name})
            return self._store(key, {
                "method": method, "layer": layer, "cam_layer": cam_layer, "target": e.target,
                "top": [{"label": lab, "p": round(p, 5)} for lab, p in e.top],
                "deletion": {"auc": float(dele.auc[0]), "scores": dele.scores[0].round(5).tolist()},
                "insertion": {"auc": float(ins.auc[0]), "scores": ins.scores[0].round(5).tolist()},
                "fractions": dele.fractions.round(5).tolist(), "files": names, "units": unit_list,
            })  # fmt: skip

        return key, work

    def unit_request(self, p: dict[str, Any]) -> tuple[str, Work]:
        """Check a unit request: layer, unit, steps, size; top patches when there is a dataset.

        Returns:
            (cache key, work for the worker).
        """
        layer = self._layer(p.get("layer"))
        unit = _int(p, "unit", None, 0, self.layers[layer] - 1)
        steps = _int(p, "steps", self.unit_steps, 8, 512)
        size = _int(p, "size", 96, 32, 256)
        key = self._key("unit", layer, unit, steps, size, self.dataset)

        def work(job: Job) -> dict[str, Any]:
            from ..synthesis.recipes import visualize

            job.progress(f"feature visualization of {layer} unit {unit}", 0, steps)

            def frame(step: int, images: torch.Tensor) -> None:
                job.progress(done=step)

            res = visualize(self.model, layer, unit, steps=steps, size=size, save_every=1, on_frame=frame)
            vis = self._save(self.results / f"{key}-vis.png", res.images[0].permute(1, 2, 0).cpu().numpy())
            patches = []
            if self.collection is not None:
                from ..dataset.views import top_patches

                result = self._dataset_pass(job, layer)
                job.progress("top patches")
                for i, patch in enumerate(top_patches(self.model, result, layer, [unit], k=8)[unit]):
                    name = self._save(self.results / f"{key}-p{i}.png", patch.image)
                    label = result.collection.label_name(patch.row) or Path(result.collection.paths[patch.row]).name
                    patches.append({"file": name, "value": round(patch.value, 4), "label": label})
            return self._store(key, {"layer": layer, "unit": unit, "vis": vis, "steps": res.steps, "patches": patches})

        return key, work

    def neighbors_request(self, p: dict[str, Any]) -> tuple[str, Work]:
        """Check a neighbour search: image, layer, k.

        Returns:
            (cache key, work for the worker).
        """
        if self.collection is None:
            raise ArgumentError("no dataset to search: start the server with --dataset DIR")
        src = self.image_source(p.get("image"))
        layer = self._layer(p.get("layer"))
        k = _int(p, "k", 8, 1, 32)
        key = self._key("neighbors", p.get("image"), layer, k, self.dataset)

        def work(job: Job) -> dict[str, Any]:
            from ..dataset.views import model_view, neighbors

            result = self._dataset_pass(job, layer)
            job.progress("nearest neighbours")
            nb = neighbors(self.model, result, layer, k=min(k, len(result.collection)), query_files=[src])
            coll = result.collection
            found = []
            for j, (row, d) in enumerate(zip(nb.feature[0], nb.feature_dist[0], strict=True)):
                name = self._save(self.results / f"{key}-n{j}.png", model_view(self.model, coll.read(int(row))))
                label = coll.label_name(int(row))
                found.append({"file": name, "distance": round(float(d), 4), "name": Path(coll.paths[int(row)]).name,
                              "label": label})  # fmt: skip
            return self._store(key, {"layer": layer, "k": k, "neighbors": found, "approx": nb.approx})

        return key, work


def _int(p: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    v = p.get(name, default)
    if v is None:
        raise ArgumentError(f"`{name}` is required")
    if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).strip().lstrip("-").isdigit():
        raise ArgumentError(f"`{name}` must be a whole number")
    n = int(v)
    if not lo <= n <= hi:
        raise ArgumentError(f"`{name}` must be between {lo} and {hi}, not {n}")
    return n
