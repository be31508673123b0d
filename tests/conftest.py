import os

import pytest

# Tests never touch the network or the user's caches.
os.environ.setdefault("GENFW_CACHE", os.path.join(os.path.dirname(__file__), ".no-cache"))
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".no-torch-home"))
# precision "auto" probes the machine and may pick bf16: tests pin fp32 (set here too, so that
# module-scoped fixtures and the subprocesses they start see it)
os.environ["GENFW_PRECISION"] = "fp32"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENFW_CACHE", str(tmp_path / "genfw-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    # precision "auto" would probe this machine and may pick bf16: tests pin fp32 (tests of the
    # policy itself lift the pin)
    monkeypatch.setenv("GENFW_PRECISION", "fp32")
    for var in ("GENFW_STRICT_PLUGINS", "GENFW_DISABLE_PLUGINS", "GENFW_PLUGINS", "GENFW_DEBUG"):
        monkeypatch.delenv(var, raising=False)
