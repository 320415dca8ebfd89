"""Digits on a canvas: a localization set where the answer to "where is the evidence?" is known.

Each of sklearn's 8x8 digits is pasted at a random position on a blank 32x32 canvas: one of
the 7 x 7 positions of a 4-px lattice by default. 4 px is the bundled ViT's patch size, so a
digit always covers 2 x 2 whole patches; measured here, at arbitrary offsets (or enlarged to
16x16 on 4-px patches) the tiny ViT reaches only 50-70% on held-out digits after a few CPU
minutes, against 96% on the lattice. Positions are drawn from a seeded generator, so the same
seed gives the same canvases everywhere. The digit's bounding box (the rows and columns holding ink) is kept with each
canvas. A model trained on canvases must find the digit to classify it, so an attribution map
that explains it well peaks inside the box: the *pointing game* (Zhang et al. 2016) counts how
often it does (`pointing_game`).

Held-out canvases hold held-out digits (`digits_split()`'s second part), so the bundled canvas
models (`digits_vit`, `digits_canvas_cnn`) never saw them, not even at another position.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from .digits import DIGIT_LABELS, digits_arrays, digits_cnn_net, digits_split, load_bundled_weights
from .models import Model, Preprocessing

CANVAS_SIZE = 32
DIGIT_SIZE = 8
LATTICE = 4
# Mean and spread of the canvases' pixels in [0, 1] (mostly blank), replicated over RGB.
CANVAS_PREPROCESSING = Preprocessing(
    input_size=CANVAS_SIZE, resize=CANVAS_SIZE, mean=(0.02,) * 3, std=(0.12,) * 3, interpolation="bilinear"
)


@dataclass
class Canvases:
    """Digits pasted on blank canvases, with where each one is.

    Attributes:
        images: uint8 (N, S, S) canvases in 0..255, ink bright on black.
        labels: (N,) the digit on each canvas.
        boxes: (N, 4) int bounding box of each digit's ink as (y0, y1, x0, x1), rows
            [y0, y1) and columns [x0, x1) (the convention of occlusion windows).
        indices: (N,) index of each canvas's digit in `digits_arrays()`.

    Example:
        >>> from visionlens.canvas import make_canvases
        >>> c = make_canvases([0, 1, 2], seed=0)
        >>> c.images.shape, c.boxes.shape, len(c)
        ((3, 32, 32), (3, 4), 3)
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: slice | np.ndarray | list[int]) -> Canvases:
        """The canvases at `rows` (a slice, or indices into this set) as a new `Canvases`."""
        return Canvases(self.images[rows], self.labels[rows], self.boxes[rows], self.indices[rows])

    def tensor(self) -> torch.Tensor:
        """The canvases as normalized (N, 3, S, S) model input (`canvas_tensor`)."""
        return canvas_tensor(self.images)


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    return digits_arrays()


def make_canvases(
    indices: np.ndarray | list[int],
    seed: int = 0,
    size: int = CANVAS_SIZE,
    digit_size: int = DIGIT_SIZE,
    lattice: int = LATTICE,
) -> Canvases:
    """Paste the digits at `indices` (into `digits_arrays()`) at random positions on blank
    canvases, one canvas per index (repeat an index for several positions).

    Args:
        indices: which digits, as indices into `digits_arrays()`.
        seed: seed of the positions; the same seed and indices give the same canvases.
        size: the canvas side, in px.
        digit_size: the side of the digit, in px (a multiple of 8: enlarged by nearest neighbour).
        lattice: the digit's top-left corner is a multiple of this many px (1: anywhere).

    Returns:
        The `Canvases`, in the order of `indices`.

    Example:
        >>> from visionlens.canvas import make_canvases
        >>> c = make_canvases([5], seed=3)
        >>> y0, y1, x0, x1 = c.boxes[0]
        >>> bool(c.images[0, y0:y1, x0:x1].sum() == c.images[0].sum())
        True
    """
    if digit_size % 8 or not 8 <= digit_size <= size:
        raise ValueError(f"digit_size must be a multiple of 8 between 8 and {size}, not {digit_size}")
    if lattice < 1:
        raise ValueError(f"lattice must be a positive number of px, not {lattice}")
    idx = np.asarray(indices, dtype=np.int64)
    images, labels = _digits()
    scale = digit_size // 8
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, (size - digit_size) // lattice + 1, size=(len(idx), 2)) * lattice
    out = np.zeros((len(idx), size, size), np.uint8)
    boxes = np.zeros((len(idx), 4), np.int64)
    for n, (i, (y, x)) in enumerate(zip(idx, pos, strict=True)):
        digit = np.kron(images[i], np.ones((scale, scale), np.uint8))
        out[n, y : y + digit_size, x : x + digit_size] = digit
        rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
        boxes[n] = (y + rows[0], y + rows[-1] + 1, x + cols[0], x + cols[-1] + 1)
    return Canvases(out, labels[idx], boxes, idx)


def heldout_canvases(seed: int = 0) -> Canvases:
    """One canvas per held-out digit of `digits_split()` (450 canvases): the set on which the
    canvas models' accuracy and the pointing game are measured.

    Args:
        seed: seed of the positions.

    Returns:
        The held-out `Canvases`.

    Example:
        >>> from visionlens.canvas import heldout_canvases
        >>> len(heldout_canvases())
        450
    """
    return make_canvases(digits_split()[1], seed=seed)


def canvas_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S) canvases to the canvas models' normalized (N, 3, S, S) input.

    Args:
        images: canvases in 0..255, as `Canvases.images`.

    Returns:
        A float (N, 3, S, S) tensor.

    Example:
        >>> from visionlens.canvas import canvas_tensor, make_canvases
        >>> canvas_tensor(make_canvases([0, 1]).images).shape
        torch.Size([2, 3, 32, 32])
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0)[:, None].expand(-1, 3, -1, -1)
    return CANVAS_PREPROCESSING.normalize(x).contiguous()


def canvas_accuracy(model: Model | nn.Module, canvases: Canvases, batch_size: int = 256) -> float:
    """The fraction of `canvases` that `model` classifies correctly, in [0, 1].

    Args:
        model: a canvas model (`Model` or `nn.Module` returning 10 logits).
        canvases: the canvases to classify.
        batch_size: canvases per forward pass.

    Returns:
        The accuracy.

    Example:
        >>> from visionlens.canvas import canvas_accuracy, heldout_canvases
        >>> canvas_accuracy(vl.load_model("digits_vit"), heldout_canvases()) >= 0.95
        True
    """
    net = model.net if isinstance(model, Model) else model
    device = next(net.parameters()).device
    x = canvases.tensor()
    preds = []
    with torch.inference_mode():
        net.eval()
        for i in range(0, len(x), batch_size):
            preds.append(net(x[i : i + batch_size].to(device)).argmax(1).cpu())
    return float((torch.cat(preds).numpy() == canvases.labels).mean())


def map_maximum(maps: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (row, col) where each map peaks. Where the maximum is a plateau (occlusion with
    stride = window gives constant blocks), the maximal pixel nearest the plateau's centroid,
    not its top-left corner.

    Args:
        maps: (N, H, W) maps.

    Returns:
        (rows, cols), two (N,) int arrays.

    Example:
        >>> from visionlens.canvas import map_maximum
        >>> m = torch.zeros(1, 8, 8)
        >>> m[0, 2:6, 4:8] = 1.0
        >>> [a.tolist() for a in map_maximum(m)]
        [[3], [5]]
    """
    m = torch.as_tensor(maps).detach().float().cpu()
    if m.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), not {tuple(m.shape)}")
    flat = m.flatten(1)
    top = flat.amax(1, keepdim=True)
    ties = flat >= top - 1e-6 * top.abs().clamp_min(1e-12)
    ys, xs = torch.meshgrid(torch.arange(m.shape[1]), torch.arange(m.shape[2]), indexing="ij")
    ys, xs = ys.flatten().float(), xs.flatten().float()
    count = ties.sum(1, keepdim=True)
    cy, cx = (ties * ys).sum(1, keepdim=True) / count, (ties * xs).sum(1, keepdim=True) / count
    dist = torch.where(ties, (ys - cy) ** 2 + (xs - cx) ** 2, torch.inf)
    best = dist.argmin(1)
    return (best // m.shape[2]).numpy(), (best % m.shape[2]).numpy()


def pointing_game(maps: torch.Tensor | np.ndarray, boxes: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Whether the maximum of each attribution map falls inside its box (a hit), as in Zhang
    et al. 2016, whose 15-px tolerance at 224 px is 2 px on a 32-px canvas.

    Args:
        maps: (N, H, W) attribution maps over the canvases (upsampled to the canvas size).
        boxes: (N, 4) boxes as (y0, y1, x0, x1), as `Canvases.boxes`.
        tolerance: px by which each box is grown on every side (0: the box itself).

    Returns:
        A bool (N,) array: hit or miss per map (`.mean()` is the pointing-game accuracy). The
        maximum is `map_maximum`'s: a plateau counts at its centre.

    Example:
        >>> from visionlens.canvas import pointing_game
        >>> m = torch.zeros(1, 8, 8)
        >>> m[0, 5, 2] = 1.0
        >>> pointing_game(m, np.array([[4, 7, 1, 3]])).tolist()
        [True]
    """
    b = np.asarray(boxes)
    if len(b) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(b)} boxes; give one box per map")
    ys, xs = map_maximum(maps)
    return (
        (ys >= b[:, 0] - tolerance)
        & (ys < b[:, 1] + tolerance)
        & (xs >= b[:, 2] - tolerance)
        & (xs < b[:, 3] + tolerance)
    )


def load_digits_canvas_cnn(weights: bool = True) -> Model:
    """`digits_canvas_cnn`: the architecture of `digits_cnn` (`digits_cnn_net`) trained on
    32x32 canvases (data/digits_canvas_cnn.pt, made by `scripts/train_digits_vit.py --cnn`).

    Args:
        weights: load the bundled weights; False leaves it untrained (for training it).

    Returns:
        The `Model` (32-px input, labels "0".."9"), in eval mode.

    Example:
        >>> from visionlens.canvas import load_digits_canvas_cnn
        >>> load_digits_canvas_cnn().preprocessing.input_size
        32
    """
    net = digits_cnn_net()
    if weights:
        load_bundled_weights(net, "digits_canvas_cnn.pt")
    return Model(net.eval(), CANVAS_PREPROCESSING, list(DIGIT_LABELS), "digits_canvas_cnn")
