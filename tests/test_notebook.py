"""Results in notebooks: `vl.show` on each kind, and docs/tour.ipynb executed by a real Jupyter
kernel (nbclient), its outputs checked (pictures present and not blank, the interactive map
inlined and working in Chromium, no error)."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import visionlens as vl
from visionlens.errors import ArgumentError

from .conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium

TOUR = Path(__file__).resolve().parents[1] / "docs" / "tour.ipynb"


def _picture(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"), np.float32)


def _not_blank(a: np.ndarray) -> None:
    assert a.shape[0] >= 32 and a.shape[1] >= 32, a.shape
    assert a.std() > 10 and len(np.unique(a.reshape(-1, 3), axis=0)) > 8, (a.std(), a.shape)


# ---------------------------------------------------------------- vl.show, kind by kind


def test_show_maps_over_their_images_keeps_tensors_plain(bundled: vl.Model) -> None:
    x = bundled.prepare("chelsea", size=96, square=True)
    cam = vl.gradcam(bundled, x)
    shown = vl.show(cam, x, model=bundled, title="Grad-CAM <b>")
    assert isinstance(cam, torch.Tensor) and cam.shape == (1, 96, 96)  # the API's result is untouched
    pic = _picture(shown.png or b"")
    _not_blank(pic)
    assert pic.shape[:2] == (96 + 8, 2 * 96 + 12)  # the image and the map over it
    # the left tile is the photograph itself (to_image undid the normalization)
    photo = bundled.to_image(x)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(pic[4:100, 4:100] - photo).mean() < 2
    assert "Grad-CAM &lt;b&gt;" in shown.html and "Grad-CAM <b>" not in shown.html
    assert shown.html.count("data:image/png;base64,") == 2


def test_show_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ArgumentError, match="cannot show a dict"):
        vl.show({"a": 1})
    with pytest.raises(ArgumentError, match="2 maps but 1 images"):
        vl.show(torch.rand(2, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ArgumentError, match="cannot draw a tensor of shape"):
        vl.show(torch.rand(2, 5, 8, 8))


def test_show_signed_attributions_and_pictures() -> None:
    signed = vl.show(torch.randn(2, 3, 32, 32))  # neither pictures nor model input: grey at zero
    pics = vl.show(torch.rand(3, 3, 32, 32))
    assert _picture(signed.png or b"").shape[1] == 2 * 32 + 12
    assert _picture(pics.png or b"").shape[1] == 3 * 32 + 16


def test_show_escapes_names_in_neighbours_and_maps(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    for i, name in enumerate(["<img src=x onerror=alert(1)>", "a", "b", "c", "d"]):
        (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"class{i % 2}" / f"{name}.png")
    digits = vl.load_model("digits_cnn")
    res = vl.run_pass(digits, str(folder), ["features.relu3"])
    nb = vl.show(vl.neighbors(digits, res, "features.relu3", k=2, queries=[0, 1]))
    evil = ["</script><script>alert(2)</script>", "x", "y", "z", "w"]
    emb = vl.show(vl.embed(res.features("features.relu3"), "pca"), dataset=res, labels=evil)
    for shown in (nb, emb):
        assert "<img src=x" not in shown.html and "<script>alert" not in shown.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in nb.html
    # inside the map's inline <script> the label is JSON with every "<" escaped
    assert r"\u003c/script>\u003cscript>alert(2)\u003c/script>" in emb.html


# ---------------------------------------------------------------- the tour, in a real kernel


def _execute(path: Path, cwd: Path) -> tuple[Any, float]:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    t0 = time.monotonic()
    # the kernel is this interpreter (ipykernel's native "python3" spec is sys.executable), so
    # the notebook runs against the package under test, in the same virtual environment
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb, time.monotonic() - t0


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb, took = _execute(TOUR, tmp_path_factory.mktemp("tour"))
    print(f"docs/tour.ipynb executed in {took:.1f} s")
    assert took < 120, took
    return nb


def test_the_tour_is_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(TOUR, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 7
    assert all(c.outputs == [] and c.execution_count is None for c in code)


def _outputs(cell: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for out in cell.outputs:
        assert out.output_type != "error", "".join(out.get("traceback", []))
        assert out.output_type != "stream" or out.name != "stderr" or "Warning" in out.text or not out.text.strip(), (
            out.text
        )
        found.update(out.get("data", {}))
    return found


@pytest.mark.slow  # a Jupyter kernel runs the whole tour: about 20-40 s on 2 cores
def test_the_tour_runs_and_every_result_draws_itself(tour: Any) -> None:
    cells = {c.source.split("\n")[-1]: _outputs(c) for c in tour.cells if c.cell_type == "code"}
    pictures = 0
    for source, data in cells.items():
        assert "text/html" in data, source
        if "image/png" in data:
            _not_blank(_picture(base64.b64decode(data["image/png"])))
            pictures += 1
    assert pictures == len(cells) - 1  # all but the layer table
    table = cells["vl.show(vl.layer_table(model, fields=False)[:12])"]["text/html"]
    assert table.count("<tr>") == 13 and "conv_stem" in table
    explained = cells['vl.explain(model, "chelsea", "gradcam", layer="blocks.5", steps=10)']["text/html"]
    assert "explains class 282 &#x27;tiger cat&#x27;" in explained and "deletion AUC" in explained
    assert "<polyline" in explained
    vis = cells['vl.visualize(model, "blocks.4", [0, 1, 2], steps=32, size=64)']["text/html"]
    assert "channel(blocks.4, [0, 1, 2])" in vis and "steps done" in vis  # the result drew itself
    nb_html = cells['vl.neighbors(digits, res, "features.relu3", k=5)']["text/html"]
    assert nb_html.count("vl-good") >= 25  # digits' neighbours share their label
    mapped = cells["vl.show(emb, dataset=res)"]["text/html"]
    assert 'class="embedmap"' in mapped and "VL_MAPS" in mapped and "View.prototype" in mapped
    assert "http://" not in mapped and "https://" not in mapped  # nothing from the network


@needs_chromium
@pytest.mark.slow
def test_the_tours_map_works_in_chromium(tour: Any, tmp_path: Path) -> None:
    """The outputs as Jupyter shows them (HTML, scripts run) in one page: the inlined map
    draws, hovering a point shows its thumbnail, no console error, no request."""
    sync_api = pytest.importorskip("playwright.sync_api")
    body = "".join(
        f'<div class="cell">{_outputs(c).get("text/html", "")}</div>' for c in tour.cells if c.cell_type == "code"
    )
    page_file = tmp_path / "tour.html"
    page_file.write_text(f"<!doctype html><meta charset='utf-8'><title>tour</title><body>{body}</body>")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: r.url.startswith(("file:", "data:")) or problems.append(r.url))
        page.goto(page_file.as_uri(), wait_until="load")
        views = page.evaluate("Object.keys(window.VL_MAP_VIEWS || {}).length")
        el = page.locator(".embedmap").first
        el.scroll_into_view_if_needed()
        point = page.evaluate("(() => { const v = Object.values(window.VL_MAP_VIEWS)[0]; return v.screenPoint(7); })()")
        page.mouse.move(point["x"], point["y"])
        page.wait_for_selector(".embedmap .vl-tip img", state="visible", timeout=5000)
        tip = page.inner_text(".embedmap .vl-tip")
        shot = tmp_path / "notebook.png"
        page.screenshot(path=str(shot), clip={"x": 0, "y": max(0, point["y"] - 300), "width": 1100, "height": 620})
        browser.close()
    assert views == 1 and not problems, problems
    assert re.search(r"\d+ · \d", html.unescape(tip)), tip  # "1234 · 7": the image and its label
    _not_blank(np.asarray(Image.open(shot).convert("RGB"), np.float32))
    out = os.environ.get("VISIONLENS_SCREENSHOTS")
    if out:
        shutil.copy(shot, Path(out) / "notebook.png")
