import os
import sys

import pytest
import torch

# the toy engine plugin (tiny GAN, toy data) the engine tests use
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import engine_toy  # noqa: E402
import harness  # noqa: E402


@pytest.fixture(scope="session")
def registry():
    torch.set_num_threads(1)
    return engine_toy.registry()


@pytest.fixture
def use_registry(registry, monkeypatch):
    import genfw.registry

    monkeypatch.setattr(genfw.registry, "get_registry", lambda reload=False: registry)
    return registry


def pytest_terminal_summary(terminalreporter):
    if harness.COUNTS["tried"]:
        terminalreporter.write_line(harness.summary_line())
        for line in harness.FAILURES[:20]:
            terminalreporter.write_line("  " + line.splitlines()[0][:300])
