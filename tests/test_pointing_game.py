"""The pointing game (Zhang et al. 2016) on held-out digit canvases: a model trained on digits
at random places must be right for the right reason, so the maximum of Grad-CAM, attention
rollout and occlusion falls inside the digit's box. Measured on the bundled `digits_vit` (timm
ViT) and `digits_canvas_cnn`; the figures are printed (`pytest -s`) for the README:

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest -s tests/test_pointing_game.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visionlens as vl
from visionlens.attribution import attention_rollout, gradcam, occlusion
from visionlens.canvas import CANVAS_PREPROCESSING, Canvases, heldout_canvases, pointing_game

N = 200  # held-out canvases scored (of 450); every method sees the same ones
THRESHOLD = 0.9
# the blank canvas in model-input units: occlusion erases a window to blank, not to grey
BLANK = float(CANVAS_PREPROCESSING.normalize(torch.zeros(3, 1, 1))[0])


@pytest.fixture(scope="module")
def canvases() -> Canvases:
    return heldout_canvases().subset(slice(0, N))


def _score(name: str, maps: torch.Tensor, c: Canvases) -> float:
    hits = pointing_game(maps, c.boxes)
    box_area = float(((c.boxes[:, 1] - c.boxes[:, 0]) * (c.boxes[:, 3] - c.boxes[:, 2])).mean()) / maps[0].numel()
    print(f"pointing game {name}: {hits.mean():.1%} of {len(hits)} held-out canvases (a random point: {box_area:.1%})")
    return float(hits.mean())


def _methods(model: vl.Model, c: Canvases, transformer: bool) -> dict[str, torch.Tensor]:
    x, target = c.tensor(), torch.from_numpy(c.labels)
    layer = vl.last_spatial_layer(model)
    maps = {f"Grad-CAM ({layer})": gradcam(model, x, target, layer=layer)}
    if transformer:
        maps["attention rollout"] = attention_rollout(model, x)
    maps["occlusion (window 8, stride 4)"] = occlusion(
        model, x, target, window=8, stride=4, baseline=BLANK, batch_size=64
    )
    return maps


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["digits_vit", "digits_canvas_cnn"])
def test_pointing_game(spec: str, canvases: Canvases) -> None:
    model = vl.load_model(spec)
    if spec == "digits_vit":
        assert vl.last_spatial_layer(model) == "blocks.3.norm1"
    scores = {name: _score(f"{spec} {name}", m, canvases) for name, m in _methods(model, canvases, spec == "digits_vit").items()}
    assert all(s >= THRESHOLD for s in scores.values()), scores


def test_pointing_game_counts_hits() -> None:
    maps = torch.zeros(3, 32, 32)
    maps[0, 10, 12] = 1.0  # inside [8, 20) x [10, 14)
    maps[1, 20, 12] = 1.0  # row 20 is past the box's last row
    maps[2, 7, 9] = 1.0  # one px outside: a hit with tolerance 1
    boxes = np.array([[8, 20, 10, 14]] * 3)
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    assert pointing_game(maps, boxes, tolerance=1).tolist() == [True, True, True]
