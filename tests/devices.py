"""The devices a test runs on: the CPU always, CUDA where this machine has it (the CUDA cases
are skipped, and say so, where it has none)."""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
]
