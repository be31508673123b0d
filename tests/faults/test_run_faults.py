"""NaN injection, concurrent writers and interrupted rewrites of run files."""
import json
import os

import pytest
import torch

import engine_toy
import harness
from genfw.core import atomic
from genfw.core import checkpoint as ck
from genfw.core.config import resolve_run
from genfw.core.runlock import RunLock, RunLockedError
from genfw.core.step import NonFiniteLossError
from genfw.core.trainer import Trainer, train


def _cfg(registry, out, **kw):
    algo = kw.pop("algo_opts", {})
    raw = engine_toy.tiny_run(str(out), **kw)
    raw["algorithm"].update(algo)
    return resolve_run(raw, registry)


class _Poison:
    """Wraps a trainer's save so the state is poisoned right before checkpoint `at`."""

    def __init__(self, trainer, at, poison):
        self.trainer, self.at, self.poison, self.orig = trainer, at, poison, trainer.save
        trainer.save = self

    def __call__(self, tag=""):
        if self.trainer.step == self.at:
            self.poison(self.trainer.algo)
        return self.orig(tag)


def _nan_weight(algo):
    with torch.no_grad():
        next(algo.nets["G"].parameters()).view(-1)[0] = float("nan")


def _inf_buffer(algo):
    for net in algo.nets.values():
        for name, b in net.named_buffers():
            if b.is_floating_point():  # BatchNorm running statistics
                b.view(-1)[0] = float("inf")
                return
    raise AssertionError("no network has a float buffer")


def _nan_adam(algo):
    opt = algo.optimizers["D"]
    state = next(iter(opt.state.values()))
    state["exp_avg_sq"].view(-1)[0] = float("nan")


@pytest.mark.parametrize("poison,owner", [(_nan_weight, "network 'G'"), (_inf_buffer, "network 'G'"),
                                          (_nan_adam, "optimizer 'D'")], ids=["weight", "buffer", "adam"])
def test_non_finite_state_stops_before_checkpoint(poison, owner, registry, tmp_path):
    cfg, resolved = _cfg(registry, tmp_path / "run", steps=6, checkpoint_every=2)
    t = Trainer(cfg, resolved, registry, progress=False)
    _Poison(t, 4, poison)
    try:
        t.run()
        outcome = harness.record(f"non-finite {owner}", "silent", "run finished")
    except ck.NonFiniteStateError as exc:
        msg = str(exc)
        saved = [p.name for p in ck.complete_checkpoints(tmp_path / "run" / "checkpoints")]
        good = owner in msg and "tensor '" in msg and "last good checkpoint:" in msg and "00000002" in msg
        outcome = harness.record(f"non-finite {owner}", "clean" if good and saved == ["00000002"] else "silent",
                                 f"{msg} {saved}")
    except Exception as exc:  # noqa: BLE001
        outcome = harness.record(f"non-finite {owner}", "traceback", repr(exc))
    harness.assert_clean([outcome])


def test_huge_learning_rate_never_checkpoints_garbage(registry, tmp_path):
    """The issue's lr=1e8 run: whatever stops it, every checkpoint left verifies and is finite."""
    cfg, resolved = _cfg(registry, tmp_path / "run", steps=12, checkpoint_every=1,
                         algo_opts={"lr_g": 1e8, "lr_d": 1e8})
    try:
        train(cfg, resolved, registry, progress=False)
        stopped = None
    except (NonFiniteLossError, ck.NonFiniteStateError) as exc:
        stopped = str(exc)
    outcomes = []
    for p in ck.complete_checkpoints(tmp_path / "run" / "checkpoints"):
        ck.verify_checkpoint(p)
        from safetensors.torch import load_file

        finite = all(torch.isfinite(v).all() for f in ("networks.safetensors", "optimizers.safetensors")
                     for v in load_file(str(p / f)).values() if v.is_floating_point())
        outcomes.append(harness.record(f"lr=1e8 checkpoint {p.name}", "clean" if finite else "silent"))
    if stopped:
        named = ck.last_good(tmp_path / "run" / "checkpoints")
        ok = ("no checkpoint was written" in stopped) if named is None else (str(named) in stopped)
        outcomes.append(harness.record("lr=1e8 last good", "clean" if ok else "silent", stopped))
    harness.assert_clean(outcomes)


def test_second_writer_is_refused_naming_the_holder(registry, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    outcomes = []
    with RunLock.acquire(out):
        for resume in (False, True):
            cfg, resolved = _cfg(registry, out, steps=2)
            try:
                train(cfg, resolved, registry, resume=resume, progress=False)
                outcomes.append(harness.record(f"locked run resume={resume}", "silent", "ran"))
            except RunLockedError as exc:
                ok = f"pid {os.getpid()}" in str(exc) and "\n" not in str(exc)
                outcomes.append(harness.record(f"locked run resume={resume}", "clean" if ok else "silent", str(exc)))
    assert not (out / "log.jsonl").exists()  # the refused runs wrote nothing
    cfg, resolved = _cfg(registry, out, steps=2)
    train(cfg, resolved, registry, progress=False)  # released: the next writer gets it
    with RunLock.acquire(out):  # and the finished run released it too
        pass
    harness.assert_clean(outcomes)


def test_interrupted_rewrites_keep_the_old_file(tmp_path, monkeypatch):
    """A kill between writing the temp file and the rename (simulated: os.replace fails) leaves the
    old log / config / pointer whole and no temp file behind."""
    outcomes = []
    for name in ("log.jsonl", "config.toml", "latest"):
        p = tmp_path / name
        p.write_text("old\n" * 1000)
        with monkeypatch.context() as m:
            def boom(*a, **k):
                raise KeyboardInterrupt
            m.setattr(atomic.os, "replace", boom)
            try:
                atomic.replace_file(p, "new\n", prefix=".latest-" if name == "latest" else None)
            except KeyboardInterrupt:
                pass
        intact = p.read_text() == "old\n" * 1000 and [q.name for q in tmp_path.iterdir()] == [name]
        outcomes.append(harness.record(f"interrupted rewrite {name}", "clean" if intact else "silent"))
        p.unlink()
    harness.assert_clean(outcomes)


def test_files_honour_umask(registry, tmp_path):
    old = os.umask(0o002)
    try:
        cfg, resolved = _cfg(registry, tmp_path / "run", steps=2)
        train(cfg, resolved, registry, progress=False)
    finally:
        os.umask(old)
    ck_dir = tmp_path / "run" / "checkpoints"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [ck_dir / "latest", ck_dir / "00000002",
                                                        *(ck_dir / "00000002").iterdir(),
                                                        tmp_path / "run" / "config.toml"]}
    want = {n: (0o775 if (ck_dir / n).is_dir() or n == "00000002" else 0o664) for n in modes}
    harness.assert_clean([harness.record("umask 002", "clean" if modes == want else "silent", str(modes))])


def test_leftover_temps_are_pruned(registry, tmp_path):
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / ".latest-abc123").write_text("00000001\n")  # a writer killed before its rename
    (root / ".tmp-00000001-xyz").mkdir()
    cfg, resolved = _cfg(registry, tmp_path / "run", steps=2)
    train(cfg, resolved, registry, progress=False)
    left = sorted(p.name for p in root.iterdir())
    harness.assert_clean([harness.record("leftover temps", "clean" if left == ["00000002", "latest"] else "silent",
                                         str(left))])


def test_trim_log_is_atomic_and_correct(registry, tmp_path):
    cfg, resolved = _cfg(registry, tmp_path / "run", steps=4, checkpoint_every=2)
    train(cfg, resolved, registry, progress=False)
    log = tmp_path / "run" / "log.jsonl"
    lines = log.read_text().splitlines()
    # the killed run logged steps 5..7 it never checkpointed, the last line half-written
    extra = [json.dumps({"step": s}) for s in (5, 6, 7)] + ['{"step": 8, "ima']
    log.write_text("\n".join(lines + extra) + "\n")
    cfg, resolved = _cfg(registry, tmp_path / "run", steps=6, checkpoint_every=2)
    train(cfg, resolved, registry, resume=True, progress=False)
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
