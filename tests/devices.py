"""The devices a test runs on: the CPU always, CUDA where this machine has it (the CUDA cases
are skipped, and say so, where it has none)."""

from __future__ import annotations

import copy

import pytest
import torch

from visionlens.models import Model

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
]


def on(model: Model, device: str) -> Model:
    """`model` on `device`: itself on the CPU, else a copy (the architecture matrix's models
    are built once per process and shared by the tests, which expect them on the CPU)."""
    return model if device == "cpu" else copy.deepcopy(model).to(device)
