"""SIGINT, SIGTERM and SIGHUP stop a real `genfw run` process at a step boundary: it saves a
checkpoint, prints the resume command and exits 128 + signal (130 for Ctrl-C); the printed
command then resumes the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(out):
    cmd = [sys.executable, "-m", "genfw", "run", "--plugin", "lis", "--out", str(out), "--steps", "100000",
           "--no-progress", "--device", "cpu", "--set", "train.log_every=1", "--set", "train.checkpoint_every=0",
           "--set", "train.sample_every=0", "--set", "train.batch_size=4"]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: a signal reaches it alone


def test_stop_signals_checkpoint_print_resume_and_exit_128_plus_signal(tmp_path):
    # all three processes run at once: one start-up wait for the lot
    procs = {name: (_start(tmp_path / name), tmp_path / name) for name in SIGNALS}
    deadline = time.time() + 240
    for name, (proc, out) in procs.items():
        log = out / "log.jsonl"
        while (not log.is_file() or len(log.read_text().splitlines()) < 2) and proc.poll() is None:
            assert time.time() < deadline, f"{name}: the run never logged a step"
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(getattr(signal, name))
    for name, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=240)
        signum = getattr(signal, name)
        assert proc.returncode == 128 + signum, (name, proc.returncode, err)
        assert "Traceback" not in err and "Aborted" not in err, err
        assert f"resume with: genfw run --resume --out {out}" in err, err
        latest = (out / "checkpoints" / "latest").read_text().strip()
        state = json.loads((out / "checkpoints" / latest / "state.json").read_text())
        assert state["reason"] == "interrupt" and state["step"] == int(latest) >= 2
    # the printed command is all it takes to continue
    out = procs["SIGINT"][1]
    step = int((out / "checkpoints" / "latest").read_text())
    done = subprocess.run([sys.executable, "-m", "genfw", "run", "--resume", "--out", str(out),
                           "--steps", str(step + 2), "--no-progress"],
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {out / 'checkpoints' / f'{step:08d}'}" in done.stderr
    assert f"done: {step + 2} steps" in done.stdout


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_stop_flag_second_signal_interrupts_at_once():
    from genfw.core.trainer import _StopFlag

    with _StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
