"""Every `Example:` in visionlens's docstrings runs as written and prints what it shows (the
docstrings are the API reference: an example that fails is a bug a user copies)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import visionlens as vl

# the names the examples take for granted, as a user's session has them
GLOBALS = {"vl": vl, "torch": torch, "np": np, "nn": nn, "torchvision": torchvision, "tempfile": tempfile, "Path": Path}
# they build whole reports: all of them the same quick report ("report" of chelsea at blocks.2),
# in one folder shared by these modules, so that each after the first reuses its figures as a
# user's rerun would (a quick report takes about a minute on 2 cores)
SLOW = {"visionlens.report.build", "visionlens.report.context"}


@pytest.fixture(scope="session")
def reports_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-examples")


def _modules() -> list[str]:
    names = ["visionlens"]
    for info in pkgutil.walk_packages(vl.__path__, "visionlens."):
        names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [n for n in _modules() if any(t.examples for t in finder.find(importlib.import_module(n), n))]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in _with_examples()]
)
def test_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reports_folder: Path) -> None:
    monkeypatch.chdir(reports_folder if name in SLOW else tmp_path)  # what an example writes lands here
    monkeypatch.delenv("VISIONLENS_CACHE", raising=False)  # the default cache, in a folder of the test's
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    module = importlib.import_module(name)  # the module, also where a same-named function shadows it
    # as pytest's doctests do: the module's own names, and those a user's session has
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in finder.find(module, name, globs={**vars(module), **GLOBALS}):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
