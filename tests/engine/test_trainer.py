import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from genfw import GenfwError
from genfw.core.step import NonFiniteLossError
from genfw.core.trainer import DataOrder, Trainer, train


def test_data_order_is_deterministic_and_sharded():
    a = DataOrder(10, 4, seed=1)
    assert a.batch(3) == DataOrder(10, 4, seed=1).batch(3)
    first_epoch = a.batch(0) + a.batch(1) + a.batch(2)[:2]
    assert sorted(first_epoch) == list(range(10))  # one epoch = a permutation
    r0, r1 = DataOrder(10, 2, 1, rank=0, world=2), DataOrder(10, 2, 1, rank=1, world=2)
    s0 = r0.batch(0) + r0.batch(1) + r0.batch(2)[:1]
    s1 = r1.batch(0) + r1.batch(1) + r1.batch(2)[:1]
    assert not set(s0) & set(s1) and sorted(s0 + s1) == list(range(10))


def test_run_writes_logs_samples_config_checkpoints(registry, run_cfg, tmp_path, capsys):
    cfg, resolved = run_cfg(steps=4, sample_every=2, sample_count=4, log_every=2)
    summary = train(cfg, resolved, registry, progress=False)
    out = tmp_path / "run"
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]
    assert {"images", "time", "D/loss", "G/loss", "D/real_score"} <= set(lines[0])
    assert lines[1]["images"] == 16
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["samples_00000002.png", "samples_00000004.png"]
    assert "[algorithm]" in (out / "config.toml").read_text() or "algorithm" in (out / "config.toml").read_text()
    assert (out / "checkpoints" / "latest").read_text().strip() == "00000004"
    assert summary["steps"] == 4 and summary["images"] == 16
    assert "done: 4 steps" in capsys.readouterr().out


def test_resume_in_process_matches_uninterrupted(registry, run_cfg, tmp_path):
    full_cfg, full_res = run_cfg(steps=6, out=tmp_path / "full")
    train(full_cfg, full_res, registry, progress=False)
    half_cfg, half_res = run_cfg(steps=4, out=tmp_path / "part")
    train(half_cfg, half_res, registry, progress=False)
    torch.manual_seed(123)  # resuming must not depend on the process' RNG
    rest_cfg, rest_res = run_cfg(steps=6, out=tmp_path / "part")
    train(rest_cfg, rest_res, registry, resume=True, progress=False)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "00000006" / "networks.safetensors"))
    b = load_file(str(tmp_path / "part" / "checkpoints" / "00000006" / "networks.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_existing_run_needs_resume(registry, run_cfg):
    cfg, resolved = run_cfg(steps=2)
    train(cfg, resolved, registry, progress=False)
    with pytest.raises(GenfwError, match="--resume"):
        train(cfg, resolved, registry, progress=False)


def test_nan_stops_and_keeps_last_good_checkpoint(registry, run_cfg, tmp_path):
    cfg, resolved = run_cfg(steps=8, algorithm="enginetest.nan-gan", algo_opts={"nan_at": 3})
    with pytest.raises(NonFiniteLossError, match=r"'G/loss' is nan at step 3.*00000002"):
        train(cfg, resolved, registry, progress=False)
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "latest").read_text().strip() == "00000002"
    assert sorted(p.name for p in ck.iterdir()) == ["00000002", "latest"]


def test_ctrl_c_checkpoints_at_step_boundary(registry, run_cfg, tmp_path):
    cfg, resolved = run_cfg(steps=50, checkpoint_every=0)
    trainer = Trainer(cfg, resolved, registry, progress=False)
    from genfw.core.gan import GANAlgorithm

    orig = GANAlgorithm.end_step

    def end_step(self, state, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return orig(self, state, step)

    GANAlgorithm.end_step = end_step
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.run()
    finally:
        GANAlgorithm.end_step = orig
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "latest").read_text().strip() == "00000003"
    state = json.loads((ck / "00000003" / "state.json").read_text())
    assert state["reason"] == "interrupt" and state["data_position"] == 3


def test_errors_before_training(registry, run_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg, resolved = run_cfg(out=blocker / "sub")
    with pytest.raises(GenfwError, match="not writable"):
        train(cfg, resolved, registry, progress=False)
    cfg, resolved = run_cfg(data={"path": str(tmp_path / "missing")})
    with pytest.raises(GenfwError, match="dataset path not found"):
        train(cfg, resolved, registry, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_mask_is_added_to_batches(registry, run_cfg):
    cfg, resolved = run_cfg(steps=1, algorithm="enginetest.mask-gan", mask={"type": "enginetest.toy-mask"})
    t = Trainer(cfg, resolved, registry, progress=False)
    t.run()
    m = t.algo.seen_mask
    assert m.shape == (4, 1, 8, 8) and set(m.unique().tolist()) == {0.0, 1.0}
    assert t.algo.ctx.has_mask


def test_bf16_and_channels_last_run(registry, run_cfg):
    cfg, resolved = run_cfg(steps=2, precision="bf16", channels_last=True)
    summary = train(cfg, resolved, registry, progress=False)
    assert summary["steps"] == 2 and all(torch.isfinite(torch.tensor(v)) for v in summary["losses"].values())


def test_fp16_needs_cuda(registry, run_cfg):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    cfg, resolved = run_cfg(steps=1, precision="fp16")
    with pytest.raises(GenfwError, match="fp16 needs a CUDA"):
        train(cfg, resolved, registry, progress=False)


def test_tensorboard_missing_warns(registry, run_cfg):
    cfg, resolved = run_cfg(steps=1, tensorboard=True)
    try:
        import torch.utils.tensorboard  # noqa: F401
        has_tb = True
    except ImportError:
        has_tb = False
    if has_tb:
        train(cfg, resolved, registry, progress=False)
    else:
        with pytest.warns(UserWarning, match="tensorboard is not installed"):
            train(cfg, resolved, registry, progress=False)


def test_worker_processes_load_data(registry, run_cfg):
    cfg, resolved = run_cfg(steps=2, num_workers=1)
    assert train(cfg, resolved, registry, progress=False)["images"] == 8


def test_resume_keeps_the_precision_the_run_chose(registry, run_cfg, tmp_path, monkeypatch):
    """`auto` is decided by a timing probe; a resumed run must not re-decide it."""
    from genfw.core.trainer import Trainer

    cfg, res = run_cfg(steps=2, out=tmp_path / "run")
    train(cfg, res, registry, progress=False)
    saved = json.loads((tmp_path / "run" / "policy.json").read_text())
    assert saved["precision"] == "fp32"  # the tests' pin
    saved.update(precision="bf16", channels_last=True)  # as if the first run had chosen bf16
    (tmp_path / "run" / "policy.json").write_text(json.dumps(saved))
    cfg, res = run_cfg(steps=3, out=tmp_path / "run")
    trainer = Trainer(cfg, res, registry, resume=True, progress=False)
    trainer.run()
    assert trainer.policy.precision == "bf16" and trainer.policy.channels_last
    assert "as the run chose" in trainer.policy.reason
