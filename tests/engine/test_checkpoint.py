import json

import pytest
import torch

from genfw import GenfwError
from genfw.core.algorithm import Context
from genfw.core.checkpoint import (find_checkpoint, join_state, load_checkpoint, load_run, save_checkpoint,
                                   split_state)


def test_split_join_roundtrip_keeps_int_keys_and_tensors():
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
             "param_groups": [{"lr": 0.1, "betas": (0.5, 0.9), "params": [0]}]}
    tensors = {}
    tree = split_state(state, "opt", tensors)
    text = json.dumps(tree)  # JSON-able
    back = join_state(json.loads(text), tensors)
    assert list(back["state"]) == [0]
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2, 2))
    assert back["param_groups"][0]["betas"] == [0.5, 0.9]
    with pytest.raises(TypeError, match="cannot store"):
        split_state({"f": object()}, "x", {})


def _algo(registry):
    import engine_toy

    algo = registry.build({"type": "core.gan", **engine_toy.TINY_NETS}, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=8, channels=1))
    return algo


def test_save_load_roundtrip_and_pruning(registry, tmp_path):
    from genfw.core.step import run_step

    torch.manual_seed(0)
    a = _algo(registry)
    for s in range(2):
        run_step(a, {"image": torch.rand(2, 1, 8, 8)}, s)
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(root, a, step=step, images=step * 2, data_position=step, config={"seed": 0},
                        keep_last=2)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["00000002", "00000003", "latest"]
    assert (root / "latest").read_text().strip() == "00000003"
    files = sorted(p.name for p in (root / "00000003").iterdir())
    assert files == ["algorithm.safetensors", "networks.safetensors", "optimizers.json",
                     "optimizers.safetensors", "state.json"]

    torch.manual_seed(1)
    b = _algo(registry)
    state = load_checkpoint(root / "00000003", b)
    assert state["step"] == 3 and state["images"] == 6 and state["data_position"] == 3
    for k, v in a.nets["G"].state_dict().items():
        assert torch.equal(v, b.nets["G"].state_dict()[k])
    sa, sb = a.optimizers["D"].state_dict(), b.optimizers["D"].state_dict()
    for i in sa["state"]:
        for key in sa["state"][i]:
            assert torch.equal(sa["state"][i][key], sb["state"][i][key])


def test_rng_state_restored(registry, tmp_path):
    import random

    import numpy as np

    a = _algo(registry)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    save_checkpoint(tmp_path, a, step=1, images=0, data_position=0, config={})
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    load_checkpoint(tmp_path / "00000001", a)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(GenfwError, match="no such run"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(GenfwError, match="has no checkpoint"):
        find_checkpoint(tmp_path)


def test_extra_state_must_be_json(registry, tmp_path):
    a = _algo(registry)
    a.extra_state = lambda: {"pool": torch.zeros(1)}
    with pytest.raises(TypeError, match="extra_tensors"):
        save_checkpoint(tmp_path, a, step=1, images=0, data_position=0, config={})
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())  # temp dir cleaned up
    assert not (tmp_path / "latest").exists()


def test_load_run_from_run_and_checkpoint_dirs(registry, run_cfg, tmp_path):
    from genfw.core.trainer import train

    cfg, resolved = run_cfg(steps=2)
    train(cfg, resolved, registry, progress=False)
    for path in (tmp_path / "run", tmp_path / "run" / "checkpoints" / "00000002"):
        algo, rcfg = load_run(str(path), "cpu", registry=registry)
        assert rcfg.train.steps == 2 and not algo.nets["G"].training
        assert algo.ctx.image_size == 8 and algo.ctx.channels == 1
        assert algo.sample(2).shape == (2, 1, 8, 8)
