import pytest
import torch

import engine_toy


@pytest.fixture(scope="session")
def registry():
    torch.set_num_threads(1)
    return engine_toy.registry()


@pytest.fixture
def run_cfg(registry, tmp_path):
    """run_cfg(**train) -> (cfg, resolved) for a tiny toy run in tmp_path/'run'."""
    from genfw.core.config import resolve_run

    def make(steps=6, algorithm="core.gan", out=None, data=None, mask=None, algo_opts=None, **train):
        raw = engine_toy.tiny_run(str(out or tmp_path / "run"), steps=steps, algorithm=algorithm, **train)
        raw["data"].update(data or {})
        raw["algorithm"].update(algo_opts or {})
        if mask:
            raw["mask"] = mask
        return resolve_run(raw, registry)

    return make
