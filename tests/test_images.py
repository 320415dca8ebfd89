from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens.errors import ImageError


@pytest.mark.parametrize("name", vl.sample_names())
def test_samples_load(name: str) -> None:
    img = vl.sample_image(name)
    assert img.mode == "RGB" and min(img.size) >= 64


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA", "1", "F"])
def test_modes_convert_to_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    elif mode == "F":
        img = Image.fromarray(np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30))
    else:
        img = rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK", "F") else "x.png")
    img.save(path)
    out = vl.load_image(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    if mode == "I;16":
        a = np.asarray(out)[..., 0]
        assert a.max() > 200 and a.min() == 0  # rescaled, not clipped to white


def test_exif_orientation(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert vl.load_image(tmp_path / "r.jpg").size == (20, 40)


def test_large_photo_loads(tmp_path: Path) -> None:
    Image.new("RGB", (8000, 6000), (90, 120, 200)).save(tmp_path / "big.jpg", quality=50)
    assert vl.load_image(tmp_path / "big.jpg").size == (8000, 6000)


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="too large"):
        vl.load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("missing.png", "no such file"),
        ("empty.png", "empty file"),
        ("text.png", "not an image"),
        ("cut.png", "truncated"),
        ("", "directory"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, match: str) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=match):
        vl.load_image(tmp_path / name)
