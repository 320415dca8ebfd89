"""The README's Python examples run as written: every ```python block, in order, in one
namespace, in an empty working directory (as a new user pasting them would)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The contents of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    # beside other busy processes, two OpenMP threads on two cores run this small-tensor work
    # many times slower than one
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_blocks_are_found() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 12
    assert blocks[0].startswith("import visionlens as vl")


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text(encoding="utf-8"))):
        try:
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README python block {i + 1} failed:\n{block}") from e
    out = capsys.readouterr().out
    assert "['tiger cat', 'espresso']" in out  # what the first block says it prints
    assert "channel(blocks.4, 7) - 0.001 * total_variation()" in out
    assert (tmp_path / "report" / "index.html").is_file()
