"""Faults that need real processes: SIGKILL during checkpoint writes, two writers on one --out,
a file-size limit (EFBIG) for real. Slow: run with -m slow."""
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch
from safetensors.torch import load_file

import engine_toy
import harness
from genfw.core import checkpoint as ck

CLI = Path(__file__).with_name("cli_toy.py")
pytestmark = pytest.mark.slow


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _config(tmp_path, out, steps, delay=0.0, every=1):
    raw = engine_toy.tiny_run(str(out), steps=steps, checkpoint_every=every, keep_last=2)
    raw["data"]["delay"] = delay
    p = tmp_path / f"{Path(out).name}.toml"
    p.write_text(tomli_w.dumps(raw))
    return p


def _cli(*args):
    return [sys.executable, str(CLI), *args]


def test_sigkill_during_writes_never_leaves_a_bad_checkpoint(tmp_path):
    """Checkpoint every step, kill at random moments (many land inside a write or the pointer
    swap), resume each time: every checkpoint on disk verifies, and the end equals an
    uninterrupted run."""
    steps = 16
    ref_cfg = _config(tmp_path, tmp_path / "ref", steps, delay=0.002)
    ref = subprocess.Popen(_cli("run", "--config", str(ref_cfg), "--no-progress"), env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cfg = _config(tmp_path, tmp_path / "victim", steps, delay=0.002)
    root = tmp_path / "victim" / "checkpoints"
    outcomes, kills = [], 0
    rng = random.Random(0)
    for attempt in range(6):
        args = ["run", "--config", str(cfg), "--no-progress"] + (["--resume"] if attempt else [])
        proc = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not (root / "latest").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        for p in ck.complete_checkpoints(root):
            try:
                ck.verify_checkpoint(p)
                outcomes.append(harness.record(f"after kill {attempt}: {p.name}", "clean"))
            except ck.CheckpointError as exc:
                outcomes.append(harness.record(f"after kill {attempt}: {p.name}", "silent", str(exc)))
        outcomes.append(harness.record(f"after kill {attempt}: latest", "clean" if ck.read_latest(root) else "silent"))
    done = subprocess.run(_cli("run", "--config", str(cfg), "--no-progress", "--resume"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err.decode()
    final = f"{steps:08d}"
    a = load_file(str(tmp_path / "ref" / "checkpoints" / final / "networks.safetensors"))
    b = load_file(str(root / final / "networks.safetensors"))
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    outcomes.append(harness.record(f"{kills} kills then resume == uninterrupted", "clean" if same else "silent"))
    assert kills >= 3
    harness.assert_clean(outcomes)


def test_two_writers_on_one_out(tmp_path):
    cfg = _config(tmp_path, tmp_path / "run", 200, delay=0.01, every=50)
    first = subprocess.Popen(_cli("run", "--config", str(cfg), "--no-progress"), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run" / ".lock"
    deadline = time.time() + 60
    while not (lock.exists() and lock.read_text()) and time.time() < deadline:
        time.sleep(0.01)
    outcomes = []
    try:
        for extra in ([], ["--resume"]):
            second = subprocess.run(_cli("run", "--config", str(cfg), "--no-progress", *extra), env=_env(),
                                    capture_output=True, text=True, timeout=120)
            lines = second.stderr.strip().splitlines()
            ok = (second.returncode == 2 and len(lines) == 1 and f"pid {first.pid}" in lines[0]
                  and "Traceback" not in second.stderr)
            outcomes.append(harness.record(f"second writer {extra}", "clean" if ok else "silent", second.stderr))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the dead holder's lock: the next writer just resumes
    again = subprocess.run(_cli("run", "--config", str(cfg), "--no-progress", "--resume", "--steps", "2"),
                           env=_env(), capture_output=True, text=True, timeout=120)
    outcomes.append(harness.record("writer after SIGKILLed holder", "clean" if again.returncode == 0 else "silent",
                                   again.stderr))
    harness.assert_clean(outcomes)


def test_file_size_limit_is_one_line(tmp_path):
    """A real EFBIG: the process may not write files over 4 KiB, so the first checkpoint fails."""
    cfg = _config(tmp_path, tmp_path / "run", 2)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    res = subprocess.run(_cli("run", "--config", str(cfg), "--no-progress"), env=_env(), capture_output=True,
                         text=True, timeout=120, preexec_fn=limit)
    lines = res.stderr.strip().splitlines()
    ok = res.returncode == 2 and lines and lines[-1].startswith("error:") and "size limit" in lines[-1] \
        and "Traceback" not in res.stderr
    root = tmp_path / "run" / "checkpoints"
    left = [p.name for p in root.iterdir()] if root.exists() else []
    tidy = not ck.complete_checkpoints(root) and not any(n.startswith(".tmp") for n in left)
    harness.assert_clean([harness.record("EFBIG", "clean" if ok else "silent", res.stderr[-500:]),
                          harness.record("EFBIG leaves nothing half-written", "clean" if tidy else "silent",
                                         str(left))])
