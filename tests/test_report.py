"""The report without a browser: caching, foreign files, unreadable images, interrupted runs,
escaping, the extension point and the command line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import visionlens as vl
from visionlens.cli import main
from visionlens.report import Extension, Settings, build_report, slugify
from visionlens.report.html import url

from .conftest import ReLUNet, seeded
from .report_helpers import EVIL, FAKE_DATASET, LAYER, TINY, image_folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, bundled: vl.Model) -> tuple[Path, Path]:
    """(report folder, image folder), built once; tests that change it work on a copy."""
    base = tmp_path_factory.mktemp("report")
    images = image_folder(base / "images")
    out = base / "site"
    build_report(bundled, [images], [LAYER], out, settings=TINY, extensions=[FAKE_DATASET])
    return out, images


def _copy(built: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "site"
    shutil.copytree(built[0], dst)
    return dst


def _figure_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in (root / "figures").rglob("*") if p.is_file()}


def test_rerun_reuses_the_cache(built: tuple[Path, Path], tmp_path: Path, bundled: vl.Model) -> None:
    out = _copy(built, tmp_path)
    before = _figure_mtimes(out)
    again = build_report(bundled, [built[1]], [LAYER], out, settings=TINY, extensions=[FAKE_DATASET])
    assert again.stats.computed == 0 and again.stats.reused > 40
    assert _figure_mtimes(out) == before  # not one figure file rewritten
    # one parameter changed: only the figures that depend on it are made again
    changed = build_report(
        bundled,
        [built[1]],
        [LAYER],
        out,
        settings=Settings(**{**TINY.__dict__, "smoothgrad_samples": 3}),
        extensions=[FAKE_DATASET],
    )
    assert changed.stats.computed_names and all("smoothgrad" in n for n in changed.stats.computed_names)
    # 2 images x 2 classes: the map, and its deletion/insertion AUC, which depend on it
    assert len(changed.stats.computed_names) == 8
    assert sum(n.endswith("-faithfulness") for n in changed.stats.computed_names) == 4


def test_foreign_files_survive(built: tuple[Path, Path], tmp_path: Path, bundled: vl.Model) -> None:
    out = _copy(built, tmp_path)
    mine = {
        "notes.txt": b"keep me",
        "figures/mine.bin": b"\x00\x01",
        "assets/custom.css": b"body{}",
        "old-page.html": b"<p>old</p>",
    }
    for rel, data in mine.items():
        (out / rel).write_bytes(data)
    build_report(bundled, [built[1]], [LAYER], out, settings=TINY, extensions=[FAKE_DATASET])
    assert {rel: (out / rel).read_bytes() for rel in mine} == mine


def test_unreadable_images_are_listed(built: tuple[Path, Path]) -> None:
    html = (built[0] / "index.html").read_text()
    skipped = html[html.index('id="skipped"') :]
    assert "broken.jpg" in skipped and "notes.txt" in skipped and "truncated" in skipped
    assert "coffee.jpg" in html and not (built[0] / "image-broken.html").exists()


def test_interrupted_run_keeps_the_previous_site(built: tuple[Path, Path], tmp_path: Path, bundled: vl.Model) -> None:
    out = _copy(built, tmp_path)
    index = (out / "index.html").read_bytes()
    pages = {p.name: p.read_bytes() for p in out.glob("*.html")}

    def boom(ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("stopped half-way")

    changed = Settings(**{**TINY.__dict__, "vis_steps": 4, "units": 3})
    with pytest.raises(RuntimeError, match="half-way"):
        build_report(
            bundled,
            [built[1]],
            [LAYER],
            out,
            settings=changed,
            extensions=[FAKE_DATASET, Extension("broken", pages=[boom])],
        )
    assert (out / "index.html").read_bytes() == index
    assert {p.name: p.read_bytes() for p in out.glob("*.html")} == pages  # no page half-updated
    assert not [p for p in out.rglob("*.tmp")]
    # every file the old pages point at still exists
    refs = [(p.name, ref) for p in out.glob("*.html") for ref in re.findall(r'(?:src|href)="([^"#]+)', p.read_text())]
    assert len(refs) > 100
    assert [(page, ref) for page, ref in refs if not ref.startswith("data:") and not (out / ref).exists()] == []


def test_names_are_escaped_and_slugs_are_safe(built: tuple[Path, Path]) -> None:
    slug = slugify(Path(EVIL).stem, key=str((built[1] / EVIL).resolve()))
    taken: set[str] = set()
    assert len({slugify("x", taken, key=k) for k in ["a/x", "b/x", "b/x"]}) == 3  # never two images on one page
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", slug) and slug != slugify("img-src-x-onerror-alert-1")
    assert url("a b/<c>#d") == "a%20b/%3Cc%3E#d"
    html = (built[0] / "index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html
    assert "<img src=x" not in html
    assert (built[0] / f"image-{slug}.html").is_file()


def test_extension_fills_the_unit_slots(built: tuple[Path, Path]) -> None:
    units = (built[0] / "units.html").read_text()
    assert units.count('data-slot="unit-patches"') == TINY.units
    assert "figures/fake-dataset/patch-blocks.2-1.png" in units
    assert "dataset.html" in (built[0] / "index.html").read_text()  # in the navigation


def test_units_slot_without_extension(tmp_path: Path, built: tuple[Path, Path], bundled: vl.Model) -> None:
    out = _copy(built, tmp_path)
    build_report(bundled, [built[1]], [LAYER], out, settings=TINY)
    units = (out / "units.html").read_text()
    assert units.count('data-slot="unit-patches"') == TINY.units and "No dataset pass yet" in units


def test_any_module(tmp_path: Path) -> None:
    """A bare nn.Module: ImageNet preprocessing, numbered classes, layers chosen among its convolutions."""
    net = seeded(ReLUNet())
    rep = build_report(net, ["chelsea", "coffee"], None, tmp_path, settings=TINY)
    assert rep.layers == ["features.0", "features.2", "features.5"]
    assert {"index.html", "units.html", "synthesis.html", "layer-features.2.html"} <= set(rep.pages)
    # the pages name the network's own top-5 classes, numbered
    model = vl.as_model(net)
    top5 = {
        name: {f"class {int(i)}" for i in vl.classify(model, model.prepare(name), 5)[1][0]}
        for name in ("chelsea", "coffee")
    }

    def named(page: str) -> set[str]:
        return set(re.findall(r"\bclass \d+\b", (tmp_path / page).read_text()))

    assert named("image-chelsea.html") == top5["chelsea"]
    assert named("index.html") == top5["chelsea"] | top5["coffee"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    cap = capsys.readouterr()
    return int(e.value.code or 0), cap.out, cap.err


def test_cli_report(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy(built, tmp_path)
    monkeypatch.setattr(Settings, "quick", classmethod(lambda cls, **kw: TINY))
    code, stdout, err = _run(
        capsys, "report", "--quick", "--images", str(built[1]), "--layers", LAYER, "--dataset", "none", "-o", str(out)
    )
    assert code == 0, err
    assert "skipped" in stdout and "broken.jpg" in stdout and str(out / "index.html") in stdout
    assert re.search(r"\b0 figures made", stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "/no/such/folder"], "no such file"),
        (["--layers", "blocks.22"], "blocks.2"),
        (["--layers", "classifier"], "not a map"),
        (["--images", ""], "empty"),
        (["--dataset", "/no/such/folder"], "not a bundled dataset"),
    ],
)
def test_cli_report_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = _run(capsys, "report", *args, "-o", str(tmp_path / "r"))
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_report_output_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = _run(capsys, "report", "-o", str(tmp_path / "f"))
    assert code == 2 and "not a folder" in err


def test_image_pages_say_which_map_to_trust(built: tuple[Path, Path]) -> None:
    """Every map carries its deletion and insertion AUC, each class section a table of them,
    and the first image's page the cascading randomization check."""
    import json

    pages = sorted(built[0].glob("image-*.html"))
    assert len(pages) == 2
    with_sanity = [p for p in pages if "Sanity check: cascading randomization" in p.read_text()]
    assert len(with_sanity) == 1
    for page in pages:
        html = page.read_text()
        assert html.count("deletion AUC (lower is better)") == 2  # one table per explained class
        assert html.count("<dt>deletion AUC</dt>") == html.count("<dt>insertion AUC</dt>") >= 8
    for side in built[0].glob("figures/images/*/*-faithfulness.json"):
        value = json.loads(side.read_text())["value"]
        assert 0 <= value["deletion"] <= 1 and 0 <= value["insertion"] <= 1
