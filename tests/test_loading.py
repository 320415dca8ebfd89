"""Model files given to `--model` / `load_model`: TorchScript and `torch.export` archives (.pt2),
with the same safety rules as checkpoints."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.test_cli import run
from visionlens.inspection import activations
from visionlens.loading import load_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    return net.eval()


def _export(path: Path, size: int = 224) -> Path:
    batch = torch.export.Dim("batch")
    program = torch.export.export(_net(), (torch.zeros(2, 3, size, size),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    with warnings.catch_warnings():  # torch deprecates TorchScript; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_net()), folder / "net.ts")
    return {"ts": folder / "net.ts", "pt2": _export(folder / "net.pt2"), "pt2-64": _export(folder / "net64.pt2", 64)}


@pytest.mark.parametrize("kind", ["ts", "pt2"])
def test_classify_a_model_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str], kind: str) -> None:
    code, out, err = run(capsys, "classify", "chelsea", "coffee", "--model", str(files[kind]), "-k", "2")
    assert code == 0, err
    assert out.count("class ") == 4  # two classes for each image, labelled "class N"
    assert "Warning" not in err


@pytest.mark.parametrize("kind", ["ts", "pt2"])
def test_a_model_file_gives_the_same_logits_without_warnings(files: dict[str, Path], kind: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(str(files[kind]))
    assert [str(w.message) for w in caught if "deprecated" in str(w.message)] == []
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model.logits(x), _net()(x), atol=1e-5)


def test_an_exported_model_keeps_its_layer_names_and_input_size(files: dict[str, Path]) -> None:
    model = load_model(str(files["pt2-64"]))
    assert model.preprocessing.input_size == 64  # the size the archive was exported at
    x = model.prepare("chelsea")
    assert x.shape[-2:] == (64, 64)
    assert activations(model, x, "2").shape == (1, 8, 31, 31)  # hooks reach the original modules


class _Ramp(nn.Module):
    """Adds a ramp made in its forward: an export records the ramp's device (the CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + torch.arange(y.shape[-1], device=x.device)


def test_an_exported_model_moves_whole_to_the_device_asked(tmp_path: Path) -> None:
    """On another device (a GPU for users; `meta` here, which refuses device mixing as CUDA
    does) the graph's own tensors follow the weights."""
    program = torch.export.export(_Ramp().eval(), (torch.zeros(1, 3, 16, 16),))
    torch.export.save(program, tmp_path / "ramp.pt2")
    with pytest.raises(RuntimeError, match="device"):  # moved as a module only, the ramp stays behind
        load_model(str(tmp_path / "ramp.pt2")).to("meta").net(torch.zeros(1, 3, 16, 16, device="meta"))
    model = load_model(str(tmp_path / "ramp.pt2"), device="meta")
    assert model.net(torch.zeros(1, 3, 16, 16, device="meta")).device.type == "meta"


def _rewrite(source: Path, target: Path, change: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, next((v for k, v in change.items() if name.endswith(k)), src.read(name)))
    return target


def test_an_archive_with_pickled_parts_needs_trust(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(files["pt2"]) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(z.read(name))
    next(iter(config["config"].values()))["use_pickle"] = True
    path = _rewrite(files["pt2"], tmp_path / "pickled.pt2", {"model_weights_config.json": json.dumps(config).encode()})
    code, _, err = run(capsys, "classify", "chelsea", "--model", str(path))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pickled Python objects" in lines[0] and "pass --trust-checkpoint only if" in lines[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip file", "not a readable torch.export archive"),
        (None, "not a torch.export archive"),  # a zip file, but not one torch.export.save wrote
        (b"", "not a readable torch.export archive"),
    ],
)
def test_a_bad_archive_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "bad.pt2"
    if content is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    else:
        path.write_bytes(content)
    code, _, err = run(capsys, "classify", "chelsea", "--model", str(path))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_a_damaged_archive_is_one_line_exit_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _rewrite(files["pt2"], tmp_path / "damaged.pt2", {"models/model.json": b"{not json"})
    code, _, err = run(capsys, "classify", "chelsea", "--model", str(path))
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot load the torch.export archive" in lines[0], err
