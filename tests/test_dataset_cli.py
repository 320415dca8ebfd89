"""`visionlens neighbors / embed / top-patches` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import run


@pytest.fixture()
def cache(tmp_path: Path) -> list[str]:
    return ["--cache", str(tmp_path / "cache")]


def _picture(path: Path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert img.std() > 20  # a real picture, not a blank canvas
    return img


def test_dataset_commands_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "nb.png"
    code, text, err = run(capsys, "neighbors", "digits", "--model", "digits_cnn", "-k", "5", "-o", str(out), *cache)
    assert code == 0, err
    assert f"wrote {out}" in text
    _picture(out)
    out = tmp_path / "map.png"
    code, text, err = run(capsys, "embed", "digits", "-m", "digits_cnn", "--method", "pca", "--mosaic", "-o", str(out),
                          "--tiles", "100", *cache)  # fmt: skip
    assert code == 0, err
    assert "trustworthiness" in text and "explained variance" in text
    _picture(out)
    mosaic = _picture(tmp_path / "map-mosaic.png")
    assert mosaic.shape[0] == 10 * 48 + 9  # 100 tiles on a 10 x 10 grid, 1-px gaps
    out = tmp_path / "tp.png"
    code, _, err = run(capsys, "top-patches", "digits", "-m", "digits_cnn", "--units", "0-3", "-k", "4",
                       "-o", str(out), *cache)  # fmt: skip
    assert code == 0, err
    _picture(out)


def test_neighbors_of_outside_query_on_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]
) -> None:
    out = tmp_path / "nb.png"
    code, _, err = run(capsys, "neighbors", "samples", "--query", "chelsea", "-k", "3", "-o", str(out), *cache)
    assert code == 0, err
    _picture(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["neighbors", "{empty}"], "no image files"),
        (["neighbors", "nowhere/at/all"], "not a bundled dataset"),
        (["neighbors", "digits", "-m", "digits_cnn", "-k", "5000"], "only 1796 other images"),
        (["top-patches", "digits", "-m", "digits_cnn", "--layer", "head.fc"], "no spatial output"),
        (["top-patches", "digits", "-m", "digits_cnn", "--units", "500"], "out of range"),
        (["top-patches", "samples", "-k", "40"], "more than the dataset's 13 images"),
        (["embed", "digits", "-m", "digits_cnn", "--method", "lle"], "pca, tsne or umap"),
        (["embed", "digits", "-m", "digits_cnn", "-o", "{tmp}/map.jpg"], "must be a .png"),
        (["neighbors", "digits", "-m", "digits_cnn", "--layer", "features.relu7"], "relu7"),
    ],
)
def test_bad_input_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str], args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", tmp=tmp_path) for a in args]
    code, _, err = (
        run(capsys, *args, "-o", str(tmp_path / "x.png"), *cache) if "-o" not in args else run(capsys, *args, *cache)
    )
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))


def test_embed_html_map_loads_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "map.png"
    code, text, err = run(capsys, "embed", "digits", "-m", "digits_cnn", "--method", "pca", "--html",
                          "--max-points", "60", "-o", str(out), *cache)  # fmt: skip
    assert code == 0, err
    index = tmp_path / "map-map" / "index.html"
    assert f"wrote {index}" in text
    assert len(list((tmp_path / "map-map" / "figures" / "dataset" / "thumbs").glob("*.png"))) == 60
    sync_api = pytest.importorskip("playwright.sync_api")
    from .test_report_browser import CHROMIUM, Watched

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        w = Watched(browser, index.parent.as_uri() + "/")
        try:
            w.open("index.html")
            pt = w.page.evaluate("() => window.VL_MAP_VIEWS['map'].screenPoint(0)")
            w.page.mouse.move(pt["x"], pt["y"])
            w.page.locator(".vl-tip").wait_for(state="visible")
            assert "digits/" in w.page.locator(".vl-tip").inner_text()
            assert not w.problems
        finally:
            w.close()
            browser.close()
