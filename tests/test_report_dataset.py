"""The report's real dataset page (neighbours, maps, mosaic) and the units' top patches, built
from a small labelled folder and checked in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens.report import build_report
from visionlens.report.dataset_page import PATCHES, extension

from .conftest import needs_chromium
from .report_helpers import LAYER, TINY
from .test_report_browser import Watched

# slow: a dataset pass with t-SNE and UMAP maps and a site built once for the module (30 s or more)
pytestmark = [needs_chromium, pytest.mark.slow]


NAMES = ("chelsea", "coffee", "rocket")
CROPS = 4  # per name
READABLE = len(NAMES) * CROPS


def _dataset(root: Path) -> Path:
    """12 photographs' crops in three labelled folders, plus one unreadable file."""
    for c, name in enumerate(NAMES):
        img = vl.sample_image(name)
        w, h = img.size
        for j in range(CROPS):
            box = (j * w // 10, j * h // 10, w - j * w // 10, h - (3 - j) * h // 12)
            (root / name).mkdir(parents=True, exist_ok=True)
            img.crop(box).resize((96, 80)).save(root / name / f"{c}-{j}.jpg")
    (root / "rocket" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, bundled: vl.Model, monkeypatch_module) -> Path:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("dataset-report")
    monkeypatch_module.setenv("VISIONLENS_CACHE", str(base / "cache"))
    data = _dataset(base / "data")
    out = base / "site"
    ext = extension(str(data))
    build_report(bundled, ["chelsea"], [LAYER], out, settings=TINY, extensions=[ext], dataset=str(data))
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_dataset_page_and_unit_patches_are_written(built: Path) -> None:
    html = (built / "dataset.html").read_text()
    texts = ("Nearest neighbours", "Maps of feature space", "Mosaic", "1 unreadable files were skipped")
    assert [t for t in texts if t not in html] == []
    spread = {}
    for stem in ("neighbors", "scatter-pca", "scatter-tsne", "scatter-umap", "mosaic"):
        img = np.asarray(Image.open(built / "figures" / "dataset" / f"{stem}.png").convert("RGB"), np.float32)
        spread[stem] = float(img.std())
    assert all(s > 10 for s in spread.values()), spread
    units = (built / "units.html").read_text()
    # one strip per unit shown, each of the top min(PATCHES, readable images) = 8 patches
    titles = re.findall(r'<span class="title">Top (\d+) dataset patches</span>', units)
    assert titles == [str(min(PATCHES, READABLE))] * TINY.units
    assert len(list((built / "figures" / "dataset").glob(f"patches-{LAYER}-*.png"))) == TINY.units
    # every map point's thumbnail, in ONE sprite sheet (1,024 a sheet) shared by the three maps
    assert len(list((built / "figures" / "dataset" / "thumbs").glob("*.jpg"))) == 1


@pytest.fixture()
def w(browser, built: Path) -> Iterator[Watched]:  # type: ignore[no-untyped-def]
    with Watched(browser, built.as_uri() + "/") as watched:
        yield watched


@pytest.mark.parametrize("page", ["dataset.html", "units.html"])
def test_pages_show_their_pictures_in_the_browser(w: Watched, page: str) -> None:
    w.open(page)
    widths = w.page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert widths and min(widths) > 0
    assert not w.problems and not w.dialogs


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_hover_on_the_dataset_map_shows_the_image(w: Watched, method: str) -> None:
    w.open("dataset.html")
    view = w.page.locator(f".embedmap[data-map='dataset-{method}']")
    view.scroll_into_view_if_needed()
    pt = w.page.evaluate(f"() => window.VL_MAP_VIEWS['dataset-{method}'].screenPoint(3)")
    w.page.mouse.move(pt["x"], pt["y"])
    tip = view.locator(".vl-tip")
    tip.wait_for(state="visible")
    # "path (label)": the label is the image's folder
    assert re.fullmatch(r"(?:.*/)?(chelsea|coffee|rocket)/\d-\d\.jpg \(\1\)", tip.inner_text())
    sel = f".embedmap[data-map='dataset-{method}'] .vl-tip img"
    w.page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0 }",
        arg=sel,
    )
    assert (view.locator(".vl-tip img").get_attribute("src") or "").startswith("figures/dataset/thumbs/")
    assert not w.problems and not w.dialogs
