"""The public API: `import visionlens as vl` is lazy and complete; one input convention."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import visionlens as vl
from visionlens.errors import ArgumentError
from visionlens.images import image_tensor


def test_import_does_not_import_torch_until_a_name_is_used() -> None:
    code = (
        "import sys, visionlens as vl\n"
        "assert 'torch' not in sys.modules, 'import visionlens imported torch'\n"
        "model = vl.load_model\n"
        "assert 'torch' in sys.modules\n"
        "assert callable(model) and vl.load_model is model\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_public_name_resolves_and_is_declared_for_type_checkers() -> None:
    init = Path(vl.__file__)
    lazy = set(vl._NAMES) | set(vl._MODULES)
    assert set(vl.__all__) == lazy
    typed: set[str] = set()
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            typed |= {a.asname or a.name for n in node.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert lazy | set(vl._SUBPACKAGES) == typed
    for name in vl.__all__:
        assert getattr(vl, name) is not None, name
    assert set(vl.__all__) | set(vl._SUBPACKAGES) <= set(dir(vl))
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        _ = vl.nonesuch  # type: ignore[attr-defined]


def test_subpackages_and_homes() -> None:
    for name in ("attribution", "synthesis", "dataset", "report"):
        assert isinstance(getattr(vl, name), types.ModuleType)
    from visionlens.dataset import views
    from visionlens.synthesis import recipes

    assert vl.visualize is recipes.visualize is vl.synthesis.visualize
    assert vl.style_transfer is recipes.style_transfer
    assert vl.neighbors is views.neighbors is vl.dataset.neighbors
    assert vl.top_patches is views.top_patches
    assert vl.build_report is vl.report.build_report
    assert vl.objectives is vl.synthesis.objectives
    assert vl.Result is vl.synthesis.Result


def test_prepare_sizes_and_the_input_conversions(bundled: vl.Model) -> None:
    assert bundled.prepare("chelsea").shape == (1, 3, 224, 224)
    x = bundled.prepare("chelsea", size=96)
    pictures = image_tensor("chelsea", 96)
    assert x.shape == pictures.shape == (1, 3, 96, 144)
    assert torch.equal(x, bundled.to_input(pictures))
    assert torch.allclose(bundled.to_image(x), pictures, atol=1e-6)
    sq = bundled.prepare(["chelsea", "coffee"], size=64, square=True)
    assert sq.shape == (2, 3, 64, 64)
    assert torch.equal(bundled.prepare(sq), sq)  # model input passes through
    with pytest.raises(ArgumentError, match="square=True"):
        bundled.prepare(["chelsea", "astronaut"], size=64)  # 64 x 96 and 64 x 64
    with pytest.raises(ArgumentError, match="model input"):
        bundled.prepare(sq, size=32)


def test_probe_takes_one_backward_rule() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(TypeError):
        vl.Probe(net, ["1"], guided=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown backward rule"):
        vl.Probe(net, ["1"], backward_rule="nonesuch")
