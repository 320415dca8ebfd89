from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionlens as vl

# The browser tests drive Debian's chromium (`make chromium`): Playwright's own download does not work here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make test installs it)"
)


class ReLUNet(nn.Module):
    """Small CNN with plain nn.ReLU modules (what Captum's guided backprop handles)."""

    def __init__(self, act: type[nn.Module] = nn.ReLU, inplace: bool = False, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            act(inplace=inplace),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            act(inplace=inplace),
            nn.Conv2d(16, 16, 3, padding=1),
            act(inplace=inplace),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class FunctionalNet(nn.Module):
    """Activations called functionally inside forward: F.relu, torch.relu, Tensor.relu, F.relu6."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor, act=None) -> torch.Tensor:  # type: ignore[no-untyped-def]
        x = F.relu(self.c1(x), inplace=True)
        x = torch.relu(self.c2(x))
        x = self.c3(x).relu()
        x = F.relu6(self.c4(x))
        return self.fc(x.mean((2, 3)))


def seeded(net: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="session")
def bundled() -> vl.Model:
    return vl.load_model()


@pytest.fixture(scope="session")
def chelsea(bundled: vl.Model) -> torch.Tensor:
    return bundled.prepare("chelsea")


@pytest.fixture()
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium for one module's tests. Module scope, not session: a second
    sync_playwright() may not start while one is running (tests that open their own)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dataset passes of the tests go to a temporary cache, never the user's ~/.cache."""
    os.environ["VISIONLENS_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
