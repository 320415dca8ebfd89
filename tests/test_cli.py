from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlens.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    cap = capsys.readouterr()
    return int(e.value.code or 0), cap.out, cap.err


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_classify(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "classify", "coffee", "chelsea", "-k", "3")
    assert code == 0 and "espresso" in out and "tiger cat" in out


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "guided", "gradcam", "guided-gradcam"])
def test_saliency_writes_png_and_array(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str) -> None:
    out = tmp_path / "s.png"
    extra = ["--samples", "4"] if method == "smoothgrad" else []
    code, _, err = run(capsys, "saliency", "chelsea", "--method", method, "-o", str(out), "--save-array", *extra)
    assert code == 0, err
    img = np.asarray(Image.open(out))
    assert img.std() > 10  # a real picture, not a blank canvas
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape[-2:] == (224, 224) and np.abs(arr).max() > 0


def test_other_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmds = [
        ["activations", "chelsea", "--layer", "blocks.2", "-o", str(tmp_path / "a.png"), "--save-array"],
        ["activations", "chelsea", "--layer", "blocks.2", "--channels", "0,3", "-o", str(tmp_path / "a2.png")],
        ["filters", "-o", str(tmp_path / "f.png")],
        ["filters", "--layer", "blocks.1.0.conv_dw", "-o", str(tmp_path / "f2.png")],
        [
            "occlusion",
            "chelsea",
            "--window",
            "32",
            "--stride",
            "32",
            "--baseline",
            "blur",
            "-o",
            str(tmp_path / "o.png"),
        ],
        ["saliency", "chelsea", "--target", "goldfish", "-o", str(tmp_path / "g.png")],
    ]
    for c in cmds:
        code, _, err = run(capsys, *c)
        assert code == 0, (c, err)
    assert np.load(tmp_path / "a.npy").shape == (40, 28, 28)
    assert _pngs(tmp_path) == ["a.npy", "a.png", "a2.png", "f.png", "f2.png", "g.png", "o.png"]


def test_layers_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "layers", "--no-fields")
    assert code == 0 and "blocks.6.0.conv_pwl" in out and "1280x7x7" in out


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("RGB", (50, 50)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    (tmp_path / "folder").mkdir()
    return {n: tmp_path / n for n in ("empty.jpg", "notes.png", "cut.png", "folder")}


BAD = [
    (["saliency", "{missing}"], "no such file"),
    (["saliency", "{empty.jpg}"], "empty file"),
    (["saliency", "{notes.png}"], "not an image"),
    (["saliency", "{cut.png}"], "truncated"),
    (["saliency", "{folder}"], "directory"),
    (["saliency", "chelsea", "--model", "nonsense"], "unknown model"),
    (["saliency", "chelsea", "--target", "1000"], "out of range"),
    (["saliency", "chelsea", "--target", "no such class"], "unknown class name"),
    (["saliency", "chelsea", "--method", "gradcam", "--layer", "blocks.9"], "no layer named"),
    (["saliency", "chelsea", "--method", "gradcam", "--layer", "classifier"], "not a spatial"),
    (["activations", "chelsea", "--layer", "classifier"], "no spatial output"),
    (["activations", "chelsea", "--layer", "blocks.2", "--channels", "99"], "out of range"),
    (["filters", "--layer", "bn1"], "not a Conv2d"),
    (["occlusion", "chelsea", "--window", "500"], "larger than"),
    (["saliency", "chelsea", "-o", "{folder}"], "output must be a .png"),
    (["saliency", "chelsea", "--device", "cuda:0"], "cuda"),
    (["saliency", "chelsea", "--weights", "{notes.png}"], "not a readable"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    files = _bad_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    files["missing"] = tmp_path / "missing.png"
    argv = []
    for a in args:
        for k, v in files.items():
            a = a.replace("{" + k + "}", str(v))
        argv.append(a)
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert _pngs(out) == []  # nothing written, not even a temporary file


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "saliency", "chelsea", "--method", "nope")
    assert code == 2 and "Traceback" not in err


def test_synthesis_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grey = tmp_path / "grey style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70), dtype=np.uint8), "L").save(grey)
    cmds = [
        [
            "visualize",
            "--layer",
            "blocks.2",
            "--unit",
            "0-1",
            "--steps",
            "4",
            "--size",
            "48",
            "--save-every",
            "2",
            "-o",
            str(tmp_path / "v.png"),
        ],
        ["visualize", "--class", "goldfish", "--steps", "2", "--size", "48", "-o", str(tmp_path / "c.png")],
        [
            "dream",
            "chelsea",
            "--layer",
            "blocks.2",
            "--size",
            "64",
            "--octaves",
            "2",
            "--steps",
            "2",
            "-o",
            str(tmp_path / "d.png"),
        ],
        ["invert", "chelsea", "--layer", "blocks.1", "--steps", "3", "-o", str(tmp_path / "i.png")],
        ["gram", "chelsea", "--layer", "blocks.2", "--top", "3", "-o", str(tmp_path / "g.png"), "--save-array"],
        ["texture", "brick", "--size", "48", "--steps", "3", "-o", str(tmp_path / "t.png")],
        ["style", "chelsea", str(grey), "--size", "48", "--steps", "3", "-o", str(tmp_path / "s.png")],
    ]
    for c in cmds:
        code, _, err = run(capsys, *c)
        assert code == 0, (c, err)
    names = _pngs(tmp_path)
    for n in ["v.png", "v-000002.png", "v-000004.png", "c.png", "d.png", "i.png", "g.png", "g.npy", "t.png", "s.png"]:
        assert n in names
    assert Image.open(tmp_path / "s.png").size == (72, 48)  # content's aspect; the grey style was converted
    assert np.load(tmp_path / "g.npy").shape == (40, 40)


SYNTH_BAD = [
    (["visualize", "--layer", "blocks.4", "--unit", "500", "--steps", "1"], "out of range"),
    (["visualize", "--layer", "blocks.44", "--unit", "1", "--steps", "1"], "no layer named"),
    (["visualize", "--class", "no such class", "--steps", "1"], "unknown class name"),
    (["visualize", "--steps", "1"], "give --layer and --unit"),
    (["visualize", "--layer", "blocks.4", "--unit", "x", "--steps", "1"], "--unit must be"),
    (["gram", "chelsea", "--layer", "classifier"], "no spatial output"),
    (["style", "chelsea", "missing.png", "--steps", "1"], "no such file"),
]


@pytest.mark.parametrize(("args", "message"), SYNTH_BAD)
def test_synthesis_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert _pngs(tmp_path) == []
