from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlens.cli import main
from visionlens.cli.app import app, as_flags, option_flags

from .pictures import check_picture, ssim


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


SLOW = pytest.mark.slow  # over about 5 s on 2 cores


@pytest.mark.parametrize(
    "method",
    [
        "gradient",
        pytest.param("smoothgrad", marks=SLOW),
        "guided",
        pytest.param("gradcam", marks=SLOW),
        pytest.param("guided-gradcam", marks=SLOW),
    ],
)
def test_saliency_writes_png_and_array(tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str) -> None:
    out = tmp_path / "s.png"
    extra = ["--samples", "4"] if method == "smoothgrad" else []
    code, _, err = run(capsys, "saliency", "chelsea", "--method", method, "-o", str(out), "--save-array", *extra)
    assert code == 0, err
    check_picture(out)  # a real picture: not blank, constant, saturated or striped
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape[-2:] == (224, 224) and np.abs(arr).max() > 0


# each command, with the files it must leave in an empty folder (and nothing else)
OTHER = {
    "activations": (
        ["activations", "chelsea", "--layer", "blocks.2", "-o", "a.png", "--save-array"], ["a.npy", "a.png"]
    ),
    "activations-channels": (
        ["activations", "chelsea", "--layer", "blocks.2", "--channels", "0,3", "-o", "a2.png"], ["a2.png"]
    ),
    "activations-channel-range": (
        ["activations", "chelsea", "--layer", "blocks.2", "--channels", "0-2,7", "-o", "a3.png"], ["a3.png"]
    ),
    "filters": (["filters", "-o", "f.png"], ["f.png"]),
    "filters-layer": (["filters", "--layer", "blocks.1.0.conv_dw", "-o", "f2.png"], ["f2.png"]),
    "occlusion": pytest.param(
        ["occlusion", "chelsea", "--window", "32", "--stride", "32", "--baseline", "blur", "-o", "o.png"], ["o.png"],
        marks=SLOW,
    ),
    "saliency-target": (["saliency", "chelsea", "--target", "goldfish", "-o", "g.png"], ["g.png"]),
}  # fmt: skip


@pytest.mark.parametrize(("args", "files"), list(OTHER.values()), ids=list(OTHER))
def test_other_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str],
    files: list[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    assert code == 0, (args, err)
    assert _pngs(tmp_path) == files
    assert f"wrote {files[-1]}" in out
    for name in files:
        if name.endswith(".png"):
            check_picture(tmp_path / name)
    if "a.npy" in files:
        assert np.load(tmp_path / "a.npy").shape == (40, 28, 28)
        assert "wrote a.png and a.npy" in out


def test_default_output_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "filters", "--max", "8")
    assert code == 0, err
    assert _pngs(tmp_path) == ["filters-conv_stem.png"]


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
    (["saliency", "chelsea", "--method", "gradcam", "--layer", "classifier"], "not a map"),
    (["activations", "chelsea", "--layer", "classifier"], "not a map"),
    (["activations", "chelsea", "--layer", "blocks.2", "--channels", "99"], "out of range"),
    (["activations", "chelsea", "--layer", "blocks.2", "--channels", "x"], "--channels must be integers"),
    (["filters", "--layer", "bn1"], "not a Conv2d"),
    (["occlusion", "chelsea", "--window", "500"], "larger than"),
    # library errors name parameters in backticks; the CLI writes them as the command's flags
    (["occlusion", "chelsea", "--window", "500"], "use a smaller --window"),
    (["occlusion", "chelsea", "--window", "0"], "--window and --stride must be positive"),
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


def test_ctrl_c_exits_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from visionlens.cli.options import ModelSpec

    def interrupted(self: ModelSpec) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelSpec, "load", interrupted)
    code, _, err = run(capsys, "classify", "chelsea")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "saliency", "chelsea", "--method", "nope")
    assert code == 2 and "Traceback" not in err


def _commands() -> dict[str, object]:
    import typer
    import typer.core

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return dict(group.commands)


@pytest.mark.parametrize(
    ("command", "message", "expected"),
    [
        ("occlusion", "`window` and `stride` must be positive", "--window and --stride must be positive"),
        ("dream", "`octaves` must be >= 1 and `octave_scale` > 1", "--octaves must be >= 1 and --octave-scale > 1"),
        ("invert", "a `tv_weight` below 0", "a --tv below 0"),
        ("neighbors", "choose another folder with `cache_dir`", "choose another folder with --cache"),
        ("neighbors", "`k` 9 is more than 8", "-k 9 is more than 8"),
        ("report", "`max_images` must be at least 1", "--max-images must be at least 1"),
        ("saliency", "pass `trust_checkpoint` only if", "pass --trust-checkpoint only if"),
        ("classify", "use `model` timm:NAME with `weights` x.pt", "use --model timm:NAME with --weights x.pt"),
        # not an identifier, or not an option of this command: left as written
        ("activations", "pick a layer (see `visionlens layers`)", "pick a layer (see `visionlens layers`)"),
        ("classify", "`window` is not an option of classify", "`window` is not an option of classify"),
    ],
)
def test_backticked_parameters_become_flags(command: str, message: str, expected: str) -> None:
    assert as_flags(message, option_flags(_commands()[command])) == expected


def test_every_command_takes_the_model_options_once() -> None:
    for name, command in _commands().items():
        flags = option_flags(command)
        assert {flags[n] for n in ("model", "weights", "trust_checkpoint", "device")} == {
            "--model", "--weights", "--trust-checkpoint", "--device"
        }, name  # fmt: skip


# each synthesis command, the files it must write, and a check of the result
SYNTH = {
    "visualize-units": pytest.param(
        ["visualize", "--layer", "blocks.2", "--unit", "0-1", "--steps", "4", "--size", "48", "--save-every", "2",
         "-o", "v.png"],
        ["v-000002.png", "v-000004.png", "v.png"],
        marks=SLOW,
    ),
    "visualize-class": (
        ["visualize", "--class", "goldfish", "--steps", "2", "--size", "48", "-o", "c.png"], ["c.png"]
    ),
    "dream": (
        ["dream", "chelsea", "--layer", "blocks.2", "--size", "64", "--octaves", "2", "--steps", "2", "-o", "d.png"],
        ["d.png"],
    ),
    "invert": pytest.param(
        ["invert", "chelsea", "--layer", "blocks.1", "--steps", "12", "-o", "i.png"], ["i.png"], marks=SLOW
    ),
    "gram": (
        ["gram", "chelsea", "--layer", "blocks.2", "--top", "3", "-o", "g.png", "--save-array"], ["g.npy", "g.png"]
    ),
    "texture": (["texture", "brick", "--size", "48", "--steps", "3", "-o", "t.png"], ["t.png"]),
    "style": (["style", "chelsea", "{grey}", "--size", "48", "--steps", "3", "-o", "s.png"], ["s.png"]),
    "style-options": (
        ["style", "chelsea", "coffee", "brick", "--style-weights", "2,1", "--strength", "0.5", "--preserve-colour",
         "--optimizer", "lbfgs", "--size", "48", "--steps", "2", "-o", "s.png"],
        ["s.png"],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("args", "files"), list(SYNTH.values()), ids=list(SYNTH))
def test_synthesis_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str],
    files: list[str],
) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    grey = tmp_path / "grey style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 70), dtype=np.uint8), "L").save(grey)
    code, _, err = run(capsys, *(a.replace("{grey}", str(grey)) for a in args))
    assert code == 0, (args, err)
    assert _pngs(out) == files
    assert "Traceback" not in err
    for name in files:
        if name.endswith(".png"):
            check_picture(out / name)
    if args[0] != "gram":  # stderr is no terminal here: the progress helper prints plain lines
        assert "done" in err.splitlines()[-1], err
    if args[0] == "style":
        assert Image.open(out / "s.png").size == (72, 48)  # content's aspect; the grey style was converted
    if args[0] == "gram":
        assert np.load(out / "g.npy").shape == (40, 40)


SYNTH_BAD = [
    (["visualize", "--layer", "blocks.4", "--unit", "500", "--steps", "1"], "out of range"),
    (["visualize", "--layer", "blocks.44", "--unit", "1", "--steps", "1"], "no layer named"),
    (["visualize", "--class", "no such class", "--steps", "1"], "unknown class name"),
    (["visualize", "--steps", "1"], "give --layer and --unit"),
    (["visualize", "--layer", "blocks.4", "--unit", "x", "--steps", "1"], "--unit must be"),
    (["visualize", "--layer", "blocks.4", "--unit", "1,2", "--diversity", "2", "--steps", "1"], "--diversity makes"),
    (["gram", "chelsea", "--layer", "classifier"], "not a map"),
    (["style", "chelsea", "missing.png", "--steps", "1"], "no such file"),
    (["style", "chelsea", "coffee", "--strength", "2", "--steps", "1"], "--strength must be in [0, 1]"),
    (["style", "chelsea", "coffee", "--style-weights", "1,2", "--steps", "1"], "--style-weights has 2 values"),
    (["style", "chelsea", "coffee", "--style-weights", "a", "--steps", "1"], "--style-weights must be numbers"),
    (["style", "chelsea", "coffee", "--optimizer", "sgd", "--steps", "1"], "--optimizer must be adam or lbfgs"),
    (["dream", "chelsea", "--strength", "0", "--steps", "1"], "--strength must be in (0, 1]"),
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


@SLOW
def test_dream_defaults_keep_the_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At the CLI's defaults (384 px, blocks.3, 4 octaves of 10 steps, strength 0.4) the dream
    keeps SSIM 0.73 to the input (strength 1: 0.4); the bound leaves room for other CPUs."""
    import visionlens as vl

    code, _, err = run(capsys, "dream", "chelsea", "-o", str(tmp_path / "d.png"))
    assert code == 0, err
    check_picture(tmp_path / "d.png")
    model = vl.load_model()
    original = model.to_image(model.prepare("chelsea", size=384))[0].numpy()
    assert ssim(original, tmp_path / "d.png") > 0.65
