"""The report's real dataset page (neighbours, maps, mosaic) and the units' top patches, built
from a small labelled folder and checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from visionlens.report import build_report
from visionlens.report.dataset_page import PATCHES, extension

from .report_helpers import LAYER, TINY
from .test_report_browser import ARGS, CHROMIUM, Watched, sync_api

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (make test installs it)",
)


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
    assert len(list((built / "figures" / "dataset" / "thumbs").glob("*.png"))) == READABLE


def test_dataset_page_in_the_browser(built: Path) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update"])  # fmt: skip
        w = Watched(browser, built.as_uri() + "/")
        try:
            for page in ("dataset.html", "units.html"):
                w.open(page)
                widths = w.page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
                assert widths and min(widths) > 0, page
            w.open("dataset.html")
            for method in ("pca", "tsne", "umap"):
                view = w.page.locator(f".embedmap[data-map='dataset-{method}']")
                view.scroll_into_view_if_needed()
                pt = w.page.evaluate(f"() => window.VL_MAP_VIEWS['dataset-{method}'].screenPoint(3)")
                w.page.mouse.move(pt["x"], pt["y"])
                tip = view.locator(".vl-tip")
                tip.wait_for(state="visible")
                assert "(" in tip.inner_text()  # "path (label)"
                sel = f".embedmap[data-map='dataset-{method}'] .vl-tip img"
                w.page.wait_for_function(
                    "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0 }",
                    arg=sel,
                )
                assert "figures/dataset/thumbs/" in (view.locator(".vl-tip img").get_attribute("src") or "")
                w.page.mouse.move(2, 2)
            assert not w.problems and not w.dialogs
        finally:
            w.close()
            browser.close()
