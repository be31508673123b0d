"""A run SIGKILLed at an arbitrary moment after its first checkpoint, then resumed, ends with the
same weights as an uninterrupted run (subprocesses, CPU, one thread)."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("run_toy.py")
STEPS, DELAY = 24, 0.01  # 4 items per step -> ~0.04 s a step: the kill lands mid-run


def _cmd(out, *extra):
    return [sys.executable, str(SCRIPT), str(out), str(STEPS), str(DELAY), *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.mark.slow  # subprocesses: ~15 s on an idle 2-core CPU
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    ref = subprocess.Popen(_cmd(tmp_path / "ref"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = tmp_path / "victim"
    proc = subprocess.Popen(_cmd(victim), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = victim / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.3))  # an arbitrary moment after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = latest.read_text().strip()
    assert int(killed_at) < STEPS
    done = subprocess.run(_cmd(victim, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stderr
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err.decode()
    final = f"{STEPS:08d}"
    a = load_file(str(tmp_path / "ref" / "checkpoints" / final / "networks.safetensors"))
    b = load_file(str(victim / "checkpoints" / final / "networks.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"weights differ after resuming from {killed_at}"
