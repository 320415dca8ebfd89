"""`visionlens neighbors / embed / top-patches` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import run


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """One feature cache for the module: each dataset pass is computed once, then reused."""
    return ["--cache", str(tmp_path_factory.mktemp("cache"))]


def _picture(path: Path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert img.std() > 20  # a real picture, not a blank canvas
    return img


def test_neighbors_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "nb.png"
    code, text, err = run(capsys, "neighbors", "digits", "--model", "digits_cnn", "-k", "5", "-o", str(out), *cache)
    assert code == 0, err
    assert f"wrote {out}" in text
    _picture(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.png"]


def test_neighbors_save_array(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "nb.png"
    code, text, err = run(capsys, "neighbors", "digits", "-m", "digits_cnn", "-k", "4", "--queries", "3",
                          "-o", str(out), "--save-array", *cache)  # fmt: skip
    assert code == 0, err
    assert f"wrote {out} and {out.with_suffix('.npz')}" in text
    with np.load(out.with_suffix(".npz")) as z:  # no pickled objects: loads without allow_pickle
        assert sorted(z.files) == sorted(
            ["feature_rows", "feature_distances", "feature_paths", "pixel_rows", "pixel_distances", "pixel_paths",
             "query_names"]
        )  # fmt: skip
        for space in ("feature", "pixel"):
            rows, dist, paths = z[f"{space}_rows"], z[f"{space}_distances"], z[f"{space}_paths"]
            assert rows.shape == dist.shape == paths.shape == (3, 4)
            assert (np.diff(dist, axis=1) >= 0).all()  # nearest first
            assert all(p.startswith("digits/") for p in paths.ravel())
        assert len(z["query_names"]) == 3
        assert not set(z["query_names"]) & set(z["feature_paths"].ravel())  # a query is not its own neighbour


@pytest.mark.slow
def test_embed_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "map.png"
    code, text, err = run(capsys, "embed", "digits", "-m", "digits_cnn", "--method", "pca", "--mosaic", "-o", str(out),
                          "--tiles", "100", *cache)  # fmt: skip
    assert code == 0, err
    assert "trustworthiness" in text and "explained variance" in text
    _picture(out)
    mosaic = _picture(tmp_path / "map-mosaic.png")
    assert mosaic.shape[0] == 10 * 48 + 9 * 3  # 100 tiles on a 10 x 10 grid, 3-px gutters


def test_embed_html_output_is_the_map_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]
) -> None:
    page = tmp_path / "site" / "digits map.html"
    code, text, err = run(capsys, "embed", "digits", "-m", "digits_cnn", "--method", "pca", "--html",
                          "--max-points", "40", "-o", str(page), *cache)  # fmt: skip
    assert code == 0, err
    assert f"wrote {page}" in text and "trustworthiness" in text
    html = page.read_text()
    assert "assets/embedmap.js" in html and "data/digits-map-" in html  # its files, beside it
    assert (
        len(list((tmp_path / "site" / "figures" / "dataset" / "thumbs").glob("*.jpg"))) == 1
    )  # 40 thumbnails, one sheet
    assert not list(tmp_path.rglob("*map*.png"))  # .html asks for the page, not the scatter PNG


def test_top_patches_on_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str]) -> None:
    out = tmp_path / "tp.png"
    code, _, err = run(capsys, "top-patches", "digits", "-m", "digits_cnn", "--units", "0-3", "-k", "4",
                       "-o", str(out), *cache)  # fmt: skip
    assert code == 0, err
    _picture(out)


@pytest.mark.slow
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
        pytest.param(  # a whole pass over head.fc before the layer can be refused
            ["top-patches", "digits", "-m", "digits_cnn", "--layer", "head.fc"],
            "no spatial output",
            marks=pytest.mark.slow,
        ),
        (["top-patches", "digits", "-m", "digits_cnn", "--units", "500"], "out of range"),
        (["top-patches", "samples", "-k", "40"], "more than the dataset's 13 images"),
        (["embed", "digits", "-m", "digits_cnn", "--method", "lle"], "pca, tsne or umap"),
        (["embed", "digits", "-m", "digits_cnn", "-o", "{tmp}/map.jpg"], "must be a .png"),
        (["neighbors", "digits", "-m", "digits_cnn", "--layer", "features.relu7"], "relu7"),
        # library errors name parameters in backticks; the CLI writes them as the command's flags
        (["neighbors", "digits", "-m", "digits_cnn", "--pool", "maxx"], "--pool must be mean or max"),
        (["neighbors", "digits", "-m", "digits_cnn", "--cache", "{tmp}/afile"], "choose another folder with --cache"),
        (["neighbors", "digits", "-m", "digits_cnn", "--engine", "spark"], "--engine must be local or ray"),
        (
            ["neighbors", "digits", "-m", "digits_cnn", "--engine", "ray", "--address", "127.0.0.1:9"],
            "cannot reach the Ray cluster at --address 127.0.0.1:9",
        ),
    ],
)
def test_bad_input_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str], args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("a file, not a folder")
    args = [a.format(empty=tmp_path / "empty", tmp=tmp_path) for a in args]
    extra = ([] if "-o" in args else ["-o", str(tmp_path / "x.png")]) + ([] if "--cache" in args else cache)
    code, _, err = run(capsys, *args, *extra)
    assert code == 2 and "Traceback" not in err
    # one error line, last; before it only the pass's plain progress lines (stderr is no terminal)
    lines = err.strip().splitlines()
    assert message in lines[-1] and [ln for ln in lines if ln.startswith("error:")] == lines[-1:], err
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.jpg"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("output", "page", "map_id"),
    [("map.png", "map-map/index.html", "map"), ("site/view.html", "site/view.html", "view")],
)
def test_embed_html_map_loads_in_chromium(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: list[str], output: str, page: str, map_id: str
) -> None:
    out = tmp_path / output
    code, text, err = run(capsys, "embed", "digits", "-m", "digits_cnn", "--method", "pca", "--html",
                          "--max-points", "60", "-o", str(out), *cache)  # fmt: skip
    assert code == 0, err
    index = tmp_path / page
    assert f"wrote {index}" in text
    assert len(list((index.parent / "figures" / "dataset" / "thumbs").glob("*.jpg"))) == 1  # 60 thumbnails, one sheet
    sync_api = pytest.importorskip("playwright.sync_api")
    from .test_report_browser import CHROMIUM, Watched

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        w = Watched(browser, index.parent.as_uri() + "/")
        try:
            w.open(index.name)
            pt = w.page.evaluate(f"() => window.VL_MAP_VIEWS['{map_id}'].screenPoint(0)")
            w.page.mouse.move(pt["x"], pt["y"])
            w.page.locator(".vl-tip").wait_for(state="visible")
            assert "digits/" in w.page.locator(".vl-tip").inner_text()
            assert not w.problems
        finally:
            w.close()
            browser.close()
