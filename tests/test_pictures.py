"""The picture check (tests/pictures.py) flags what it should and passes the gallery; mosaics
keep every tile's aspect ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens import plots, render

from .pictures import check_picture, picture_problems, ssim

GALLERY = sorted((Path(__file__).resolve().parents[1] / "docs" / "gallery").glob("*.png"))


def _photo(size: int = 224) -> np.ndarray:
    return np.asarray(vl.load_image("chelsea").resize((size, size)), np.float32) / 255.0


def _token_cam(odd_columns: bool) -> np.ndarray:
    """A 14 x 14 Grad-CAM on a token grid blown up to 224 px; with `odd_columns` every other
    token column is cold, as when a token layer's positions are read in the wrong order."""
    yy, xx = np.mgrid[0:14, 0:14]
    cam = 0.3 + np.exp(-((yy - 6) ** 2 + (xx - 5) ** 2) / 18.0)
    if odd_columns:
        cam[:, 1::2] = 0
    return np.kron(cam, np.ones((16, 16)))


@pytest.mark.parametrize("path", GALLERY, ids=[p.name for p in GALLERY])
def test_gallery_pictures_pass(path: Path) -> None:
    # 8x8 digits are white strokes on pure black by nature; the report-* screenshots are pages,
    # white between their figures
    limit = 0.8 if "digits" in path.name else 0.5 if path.name.startswith("report-") else 0.2
    check_picture(path, max_clipped=limit)


def test_stripes_are_flagged() -> None:
    cam = _token_cam(odd_columns=False)
    striped = _token_cam(odd_columns=True)
    assert picture_problems(render.colorize(cam)) == []
    assert picture_problems(render.overlay(_photo(), cam, alpha=0.8)) == []
    figure = np.ones((250, 500, 3))
    figure[10:234, 10:234] = _photo()
    figure[10:234, 260:484] = render.colorize(striped)  # the photo and its striped map, side by side
    for picture in (render.colorize(striped), render.colorize(striped.T), figure):
        problems = picture_problems(picture)
        assert len(problems) == 1 and problems[0].startswith("stripes") and "period 32.0 px" in problems[0], problems
    assert "panel 2" in picture_problems(figure)[0]
    sine = 0.5 + 0.3 * np.sin(np.arange(200) / 200 * 2 * np.pi * 25)[:, None] * np.ones((200, 150))
    assert "period 8.0 px across y" in picture_problems(sine)[0]


def test_blank_constant_saturated_and_nan_are_flagged(tmp_path: Path) -> None:
    photo = _photo()
    assert picture_problems(np.ones((64, 64, 3))) == ["constant: every pixel has the same colour"]
    figure = np.ones((120, 300, 3))
    figure[10:20, 10:200] = 0  # a caption: too thin to be a panel
    assert picture_problems(figure)[0].startswith("blank")
    grey = np.ones((250, 500, 3))
    grey[10:234, 10:234] = photo
    grey[10:234, 260:484] = 0.5  # one grey panel beside a good one
    assert picture_problems(grey) == ["constant: panel 2 (224x224 at x=260, y=10) has luminance std 0.00"]
    burnt = np.clip(12 * (photo - 0.5) + 0.5, 0, 1)  # contrast pushed until most pixels clip
    assert picture_problems(burnt)[0].startswith("saturated")
    stained = photo.copy()
    stained[50:90, 50:90] = np.nan
    assert picture_problems(stained) == ["NaN-stained: 3.2% of the pixels are not finite"]
    render.save_image(tmp_path / "p.png", photo)
    check_picture(tmp_path / "p.png")
    with pytest.raises(AssertionError, match="saturated"):
        check_picture(burnt, "burnt")


def test_ssim_agrees_with_skimage() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a = _photo(96)
    b = np.clip(a + np.random.default_rng(0).normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(metrics.structural_similarity(a, b, channel_axis=2, data_range=1.0), abs=1e-4)


@pytest.mark.parametrize("tile", [13, 48, 50])
def test_mosaic_tiles_keep_the_aspect_ratio(tile: int) -> None:
    digit = np.zeros((8, 8, 3), np.float32)
    digit[1:7, 3:5] = 1.0  # a '1': a narrow upright bar
    tall = _photo(120)[:, 30:90]  # a 120 x 60 photo: twice as tall as wide
    wide = tall.transpose(1, 0, 2)
    images = [digit, tall, wide]
    canvas = plots.mosaic(None, np.array([(0, 0), (0, 1), (1, 0)]), 2, 2, lambda i: images[i], tile_size=tile, gap=1)
    cells = [canvas[r * (tile + 1) : r * (tile + 1) + tile, c * (tile + 1) : c * (tile + 1) + tile] for r, c in
             [(0, 0), (0, 1), (1, 0)]]  # fmt: skip
    for img, cell in zip(images, cells, strict=True):
        h, w = img.shape[:2]
        filled = np.argwhere(np.abs(cell - 1).sum(-1) > 1e-6) if img is not digit else None
        # the letterboxed picture: the image at the tile's scale, centred
        s = tile / max(h, w)
        if img is digit and int(s) >= 4:
            s = float(int(s))
        nh, nw = round(h * s), round(w * s)
        y, x = (tile - nh) // 2, (tile - nw) // 2
        shown = cell[y : y + nh, x : x + nw]
        method = Image.Resampling.NEAREST if img is digit else Image.Resampling.BICUBIC
        pil = Image.fromarray((img * 255).round().astype(np.uint8))
        expected = np.asarray(pil.resize((nw, nh), method), np.float32) / 255.0
        if img is digit:
            assert nh == nw and (tile < 32 or nh == 8 * int(tile / 8))  # square, whole pixels from 32 px
            assert np.abs(shown - expected).max() == 0
        else:
            assert filled is not None
            box_h = filled[:, 0].max() - filled[:, 0].min() + 1
            box_w = filled[:, 1].max() - filled[:, 1].min() + 1
            assert box_h / box_w == pytest.approx(h / w, rel=0.15)  # not squeezed into the square
            assert np.abs(shown - expected).mean() < 0.02  # the whole image, not a crop
        margin = np.ones_like(cell, bool)
        margin[y : y + nh, x : x + nw] = False
        assert np.all(cell[margin] == 1.0)  # letterboxed in white
