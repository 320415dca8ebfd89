"""Digits on canvases (`visionlens.canvas`) and the bundled canvas models `digits_vit` (a timm
ViT) and `digits_canvas_cnn`: deterministic canvases with correct boxes, held-out canvases
holding held-out digits, and >= 95% held-out accuracy from the committed weights:

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest -s tests/test_canvas.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import visionlens as vl
from visionlens.canvas import LATTICE, canvas_accuracy, heldout_canvases, make_canvases
from visionlens.digits import digits_arrays, digits_split
from visionlens.errors import ModelError


def test_canvases_are_deterministic_with_true_boxes() -> None:
    a, b = make_canvases(np.arange(50), seed=4), make_canvases(np.arange(50), seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(make_canvases(np.arange(50), seed=5).images, a.images)
    digits, labels = digits_arrays()
    assert np.array_equal(a.labels, labels[:50])
    for img, (y0, y1, x0, x1), i in zip(a.images, a.boxes, a.indices, strict=True):
        ink = np.argwhere(img > 0)
        assert (ink.min(0) == (y0, x0)).all() and (ink.max(0) + 1 == (y1, x1)).all()  # the tight ink box
        assert img.sum() == digits[i].astype(np.int64).sum()  # the whole digit, nothing else
    positions = {tuple(make_canvases(np.zeros(400, int), seed=0).boxes[k, [0, 2]]) for k in range(400)}
    assert len(positions) == 49  # digit 0 has the same ink offsets everywhere: 7 x 7 lattice positions
    big = make_canvases([0, 1], seed=0, digit_size=16, lattice=1)
    assert big.images.shape == (2, 32, 32) and int((big.images > 0).sum()) > int((a.images[:2] > 0).sum())


def test_heldout_canvases_hold_heldout_digits() -> None:
    train, test = digits_split()
    held = heldout_canvases()
    assert len(held) == len(test) == 450 and np.array_equal(held.indices, test)
    assert not set(held.indices) & set(train)
    assert held.tensor().shape == (450, 3, 32, 32)
    assert vl.load_model("digits_vit").net.patch_embed.patch_size[0] == LATTICE
    with pytest.raises(ValueError, match="multiple of 8"):
        make_canvases([0], digit_size=12)


@pytest.mark.parametrize(("spec", "size_kb"), [("digits_vit", 1500), ("digits_canvas_cnn", 500)])
def test_committed_canvas_models_reach_95_percent(spec: str, size_kb: int) -> None:
    model = vl.load_model(spec)
    acc = canvas_accuracy(model, heldout_canvases())
    print(f"{spec}: {acc:.1%} on the 450 held-out canvases")
    assert acc >= 0.95
    assert model.name == spec and model.labels == [str(i) for i in range(10)]
    assert model.preprocessing.input_size == 32 and not model.net.training
    assert (Path(vl.__file__).parent / "data" / f"{spec}.pt").stat().st_size < size_kb * 1000


def test_digits_vit_is_a_timm_vit() -> None:
    from timm.models.vision_transformer import VisionTransformer

    net = vl.load_model("digits_vit").net
    assert isinstance(net, VisionTransformer)
    assert net.num_prefix_tokens == 1 and tuple(net.patch_embed.grid_size) == (8, 8)
    assert net.blocks[0].attn.fused_attn
    x = heldout_canvases().subset(slice(0, 3)).tensor()
    assert net(x).shape == (3, 10)


def test_unknown_spec_names_the_canvas_models() -> None:
    with pytest.raises(ModelError, match="digits_vit, digits_canvas_cnn"):
        vl.load_model("digits_vitt")


def test_canvas_tensor_is_normalized() -> None:
    x = make_canvases(np.arange(300)).tensor()
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3
    assert torch.equal(x, make_canvases(np.arange(300)).tensor())
