"""Image collections: a folder (searched recursively, subfolder names as labels), a text file
listing image paths, or a bundled dataset (`samples`, `digits`).

A `Collection` knows how to read each image and carries a fingerprint that changes whenever
its content may have (paths, sizes and modification times), so a feature cache can be keyed
on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ArgumentError, ImageError
from ..images import SAMPLES, load_image, sample_image, sample_names
from ..io import fingerprint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
BUNDLED = ("samples", "digits")
"""The names of the bundled datasets `open_dataset` accepts besides folders and lists.

Example:
    >>> from visionlens.dataset import open_dataset
    >>> from visionlens.dataset.sources import BUNDLED
    >>> [len(open_dataset(name)) for name in BUNDLED]
    [13, 1797]
"""


class DatasetError(ArgumentError):
    """A dataset that cannot be used as given (empty, unreadable, unknown name).

    Args:
        message: what is wrong with the dataset and what to give instead.

    Example:
        >>> from visionlens.dataset import DatasetError, open_dataset
        >>> try:
        ...     open_dataset("no-such-folder")
        ... except DatasetError as e:
        ...     print(e)
        no-such-folder: no such folder or file, and not a bundled dataset (samples, digits)
    """


@dataclass
class Collection:
    """An ordered list of images with optional integer labels.

    `open_dataset` makes one; `run_pass` streams it through a model.

    Attributes:
        name: what it was opened from (a folder, a list file, "samples" or "digits").
        paths: one display name per image: a file path, a sample name, or `digits/0017`.
        labels: one class index per image (-1: none), or None for an unlabelled collection.
        classes: the class names the labels index (a folder collection's subfolders).
        arrays: the images in memory, (N, H, W) or (N, H, W, 3) uint8, for bundled datasets;
            else None (images are read from `paths`).
        fingerprint: a short digest of the contents (paths, sizes and times), for caches.
        duplicates: repeated entries dropped when the collection was built.

    Example:
        >>> from visionlens.dataset import open_dataset
        >>> digits = open_dataset("digits")
        >>> len(digits), digits.label_name(0), digits.read(0).size
        (1797, '0', (8, 8))
    """

    name: str
    paths: list[str]
    labels: list[int] | None = None
    classes: list[str] = field(default_factory=list)
    arrays: np.ndarray | None = None
    fingerprint: str = ""
    duplicates: int = 0  # repeated entries dropped when the collection was built
    stats: list[str] | None = field(default=None, repr=False)  # each file's path|size|mtime when listed

    def __len__(self) -> int:
        """The number of images."""
        return len(self.paths)

    def read(self, i: int) -> Image.Image:
        """The i-th image as RGB; raises ImageError when it cannot be read."""
        if self.arrays is not None:
            return load_image(self.arrays[i])
        if self.name == "samples":
            return sample_image(self.paths[i])
        return load_image(self.paths[i])

    def label_name(self, i: int) -> str:
        """The class name of image `i`, or "" when it has no label."""
        if self.labels is None or self.labels[i] < 0:
            return ""
        return self.classes[self.labels[i]]

    def subset(self, indices: Sequence[int]) -> Collection:
        """The images at `indices`, in that order, as a collection of their own (its own
        fingerprint, the same classes)."""
        idx = list(indices)
        return Collection(
            name=self.name,
            paths=[self.paths[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            classes=self.classes,
            arrays=None if self.arrays is None else self.arrays[idx],
            fingerprint=_hash([self.fingerprint, *map(str, idx)]),
            stats=None if self.stats is None else [self.stats[i] for i in idx],
        )


def _hash(parts: Sequence[str]) -> str:
    return fingerprint(*parts)[:16]


def _stat_key(p: Path) -> str:
    try:
        st = p.stat()
        return f"{p}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return f"{p}|missing"


def _from_files(name: str, files: list[Path], root: Path | None) -> Collection:
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    labels: list[int] | None = None
    classes: list[str] = []
    if root is not None:
        parts = [f.relative_to(root).parts for f in unique]
        if any(len(p) > 1 for p in parts):
            classes = sorted({p[0] for p in parts if len(p) > 1})
            index = {c: i for i, c in enumerate(classes)}
            labels = [index[p[0]] if len(p) > 1 else -1 for p in parts]
    stats = [_stat_key(f) for f in unique]
    return Collection(
        name=name,
        paths=[str(f) for f in unique],
        labels=labels,
        classes=classes,
        fingerprint=_hash([name, *stats]),
        duplicates=len(files) - len(unique),
        stats=stats,
    )


def folder(path: str | os.PathLike[str]) -> Collection:
    """Every image file under `path` (recursively, sorted); the first-level subfolder a file is
    in is its label, as in torchvision's ImageFolder."""
    root = Path(path)
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(root).parts,
    )
    if not files:
        raise DatasetError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return _from_files(str(root), files, root)


def listing(path: str | os.PathLike[str]) -> Collection:
    """A text file with one image path per line (relative paths are relative to the file)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the image list ({e})") from None
    files = [Path(s) if Path(s).is_absolute() else path.parent / s for s in (ln.strip() for ln in lines) if s]
    files = [f for f in files if not str(f).startswith("#")]
    if not files:
        raise DatasetError(f"{path}: the image list is empty")
    return _from_files(str(path), files, None)


def samples() -> Collection:
    """The bundled sample photographs (`sample_names()`), unlabelled."""
    names = sample_names()
    return Collection(name="samples", paths=names, fingerprint=_hash(["samples", *names]))


def digits() -> Collection:
    """sklearn's 1,797 labelled 8x8 digits, held in memory."""
    from ..digits import DIGIT_LABELS, digits_arrays

    images, labels = digits_arrays()
    return Collection(
        name="digits",
        paths=[f"digits/{i:04d}" for i in range(len(labels))],
        labels=[int(v) for v in labels],
        classes=list(DIGIT_LABELS),
        arrays=images,
        fingerprint=fingerprint("digits", images)[:16],
    )


def open_dataset(spec: str | os.PathLike[str] | Collection) -> Collection:
    """Open an image collection: `samples`, `digits`, a folder of images, or a .txt file
    listing image paths.

    Args:
        spec: "samples" (the bundled photographs), "digits" (sklearn's labelled 8x8 digits),
            a folder (every image under it, recursively; a first-level subfolder is a file's
            label, as in torchvision's ImageFolder), a .txt file with one image path per line
            (relative to the file), or a `Collection` (returned as is).

    Returns:
        The `Collection`. An empty, unreadable or unknown spec is a `DatasetError`.

    Example:
        >>> from visionlens.dataset import open_dataset
        >>> data = open_dataset("samples")
        >>> len(data), data.paths[:2]
        (13, ['astronaut', 'brick'])
    """
    if isinstance(spec, Collection):
        return spec
    s = str(spec)
    p = Path(s)
    if p.is_dir():
        return folder(p)
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            raise DatasetError(
                f"{p}: is one image; give a folder of images, a .txt list of paths, or {' / '.join(BUNDLED)}"
            )
        return listing(p)
    if s == "samples":
        return samples()
    if s == "digits":
        return digits()
    raise DatasetError(f"{s}: no such folder or file, and not a bundled dataset ({', '.join(BUNDLED)})")


__all__ = ["BUNDLED", "SAMPLES", "Collection", "DatasetError", "ImageError", "open_dataset"]


@dataclass
class Changes:
    """How the files of a collection differ from when it was listed (`changes` makes it).

    Attributes:
        added: image files in its folder or list now that were not listed.
        removed: listed files that are gone.
        changed: listed files whose size or modification time differ (rewritten, truncated).
        now: the collection as it is now.
    """

    added: int
    removed: int
    changed: int
    now: Collection

    def __str__(self) -> str:
        parts = [f"{v} {k}" for k, v in (("added", self.added), ("removed", self.removed), ("changed", self.changed))]
        return ", ".join(p for p in parts if not p.startswith("0 ")) or "unchanged"


def changes(coll: Collection) -> Changes | None:
    """Whether the image files of `coll` changed since it was listed: files added to its folder
    or list, listed files removed or rewritten. Bundled and in-memory collections never change.

    Args:
        coll: a collection made by `open_dataset` (or a subset of one).

    Returns:
        None when nothing changed, else the `Changes`, with the collection as it is now.

    Example:
        >>> from visionlens.dataset import open_dataset
        >>> from visionlens.dataset.sources import changes
        >>> print(changes(open_dataset("samples")))
        None
    """
    if coll.stats is None:
        return None
    now_stats = [_stat_key(Path(p)) for p in coll.paths]
    removed = sum(s.endswith("|missing") for s in now_stats)
    changed = sum(a != b and not a.endswith("|missing") for a, b in zip(now_stats, coll.stats, strict=True))
    src = Path(coll.name)
    try:  # the folder or list as it is now (a subset or a list of files: those files)
        now = folder(src) if src.is_dir() else listing(src) if src.is_file() else None
    except DatasetError:
        now = None
    if now is None:
        kept = [p for p, s in zip(coll.paths, now_stats, strict=True) if not s.endswith("|missing")]
        now = _from_files(coll.name, [Path(p) for p in kept], None) if kept else coll.subset([])
    added = len(set(now.paths) - set(coll.paths))
    if not (added or removed or changed):
        return None
    return Changes(added, removed, changed, now)


def listing_of(paths: Sequence[str]) -> Collection:
    """A collection of the given image files (or bundled sample names), in order."""
    names = [str(p) for p in paths]
    if all(n in SAMPLES and not Path(n).exists() for n in names):
        return Collection(name="samples", paths=names, fingerprint=_hash(["samples", *names]))
    return _from_files("images", [Path(n) for n in names], None)
