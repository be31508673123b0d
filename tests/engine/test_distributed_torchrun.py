"""Runs under real torchrun (gloo, CPU, one thread a process): SIGKILL + resume, elastic restart,
and resume on another world size (two "nodes" through the c10d rendezvous: test_distributed_cli.py).

Every run here trains the same toy config (ddp_toy.py): 2 items per process and step, 24 items an
epoch, a checkpoint every 2 steps. An uninterrupted single-node 2-process run is the reference.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
SCRIPT = HERE / "ddp_toy.py"
STEPS = 12            # 2 ranks x 2 items: 4 stream positions a step, 2 epochs in all
DELAY = 0.03          # seconds per item in the runs a test kills, so the kill lands mid-run
TIMEOUT = 300

pytestmark = pytest.mark.slow


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _torchrun(launch: list[str], *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, str(SCRIPT), *map(str, args)]


SINGLE_NODE = ["--standalone", "--nproc-per-node", "2"]


def _run(cmd, **kw):
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _ckpt(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{step:08d}"


def _ranks(ckpt: Path) -> list[dict]:
    return json.loads((ckpt / "ranks.json").read_text())["ranks"]


def _assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical final checkpoints: weights, optimizer states, and every rank's random streams,
    data position and algorithm state."""
    for name in ("networks.safetensors", "optimizers.safetensors"):
        x, y = load_file(str(_ckpt(a, STEPS) / name)), load_file(str(_ckpt(b, STEPS) / name))
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x), f"{name} differs"
    ra, rb = _ranks(_ckpt(a, STEPS)), _ranks(_ckpt(b, STEPS))
    assert len(ra) == len(rb) == 2
    for x, y in zip(ra, rb):
        assert x == y, f"rank {x['rank']} state differs"
    assert ra[0]["rng"] != ra[1]["rng"] and ra[0]["algorithm"] != ra[1]["algorithm"]  # truly per rank


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    _run(_torchrun(SINGLE_NODE, out, STEPS))
    return out


def test_replicas_stay_identical_and_every_rank_is_counted(reference):
    digests = {(reference / f"weights-rank{r}.sha256").read_text() for r in (0, 1)}
    assert len(digests) == 1  # rank 1's weights are rank 0's, bit for bit, after 12 steps
    log = [json.loads(x) for x in (reference / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == list(range(1, STEPS + 1)) and log[-1]["images"] == 2 * 2 * STEPS
    first = load_file(str(_ckpt(reference, 2) / "networks.safetensors"))
    last = load_file(str(_ckpt(reference, STEPS) / "networks.safetensors"))
    assert any(not torch.equal(first[k], last[k]) for k in first if k.endswith("weight"))  # it trained


def _wait_for_checkpoint(out: Path, proc) -> None:
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + TIMEOUT
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert latest.exists(), "no checkpoint was written"


def _pids(pid_dir: Path, restart: int) -> dict[int, int]:
    deadline = time.time() + 30
    while time.time() < deadline:
        got = {r: pid_dir / f"rank{r}-r{restart}" for r in (0, 1)}
        if all(p.exists() and p.read_text() for p in got.values()):
            return {r: int(p.read_text()) for r, p in got.items()}
        time.sleep(0.01)
    raise AssertionError(f"workers of start {restart} did not report their pids")


def test_sigkill_of_a_two_process_run_resumes_bit_exact_on_every_rank(reference, tmp_path):
    out, pid_dir = tmp_path / "run", tmp_path / "pids"
    job = subprocess.Popen(_torchrun(SINGLE_NODE, out, STEPS, "--delay", DELAY, "--pid-dir", pid_dir),
                           env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = _pids(pid_dir, 0)
    _wait_for_checkpoint(out, job)
    time.sleep(random.uniform(0.0, 0.3))  # an arbitrary moment after the first checkpoint
    for pid in (*workers.values(), job.pid):  # the whole job dies at once, like a lost node
        os.kill(pid, signal.SIGKILL)
    job.wait()
    killed_at = int((out / "checkpoints" / "latest").read_text())
    assert killed_at < STEPS, "the run finished before it could be killed"
    done = _run(_torchrun(SINGLE_NODE, out, STEPS, "--resume"))
    assert f"resumed from {_ckpt(out, killed_at)}" in done.stderr
    _assert_same_run(reference, out)


def test_elastic_restart_after_a_worker_is_killed(reference, tmp_path):
    out, pid_dir = tmp_path / "run", tmp_path / "pids"
    # Exactly the one restart the kill needs. The restarted rank 1 joins late, so the restarted rank 0
    # reaches torchrun's shared store first, where the killed attempt's gloo keys (the dead rank 1's
    # address) still are: without genfw's per-attempt key space it connects to the dead process
    # ("Gloo connectFullMesh failed ... Connection refused") and, with no restart left, the job fails.
    cmd = _torchrun([*SINGLE_NODE, "--max-restarts", "1"], out, STEPS, "--delay", DELAY, "--pid-dir", pid_dir,
                    "--late-restart", 2, "--resume")
    job = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _pids(pid_dir, 0)
    _wait_for_checkpoint(out, job)
    os.kill(first[1], signal.SIGKILL)  # one worker of the first start dies
    _, err = job.communicate(timeout=TIMEOUT)
    assert job.returncode == 0, err[-3000:]
    second = _pids(pid_dir, 1)  # torchrun started both workers again...
    assert set(second.values()).isdisjoint(first.values())
    assert "resumed from" in err  # ...and they continued from the last checkpoint
    _assert_same_run(reference, out)


def test_two_node_elastic_restart_after_a_worker_is_killed(reference, tmp_path):
    """Two agents ("nodes" of one worker each) on the c10d rendezvous: the node whose worker dies
    restarts it and uses its one restart; the other node's agent restarts its worker when the
    first comes back to the rendezvous (or when its own worker fails), so the two nodes' workers
    may see different TORCHELASTIC_RESTART_COUNTs. They must still form one process group."""
    out, pid_dir = tmp_path / "run", tmp_path / "pids"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "elastic-2n", "--max-restarts", "1"]
    cmd = _torchrun(launch, out, STEPS, "--delay", DELAY, "--pid-dir", pid_dir, "--late-restart", 2, "--resume")
    nodes = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    first = _pids(pid_dir, 0)
    _wait_for_checkpoint(out, nodes[0])
    os.kill(first[1], signal.SIGKILL)
    errs = [p.communicate(timeout=TIMEOUT)[1] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(e[-3000:] for e in errs)
    started = {int(f.read_text()) for f in pid_dir.glob("rank*-r*")}
    assert len(started - set(first.values())) >= 1 and os.path.exists(out / "weights-rank1.sha256")
    assert any("resumed from" in e for e in errs)
    _assert_same_run(reference, out)


# --- another world size ------------------------------------------------------------------------------
def _seen(ckpt: Path, ranks: list[int], steps: range) -> dict[int, list[int]]:
    """Dataset indices every listed rank trained on at each step, from the checkpoint's per-rank
    algorithm state (single-process checkpoints keep it in state.json)."""
    if (ckpt / "ranks.json").exists():
        states = {e["rank"]: e["algorithm"]["seen"] for e in _ranks(ckpt)}
    else:
        states = {0: json.loads((ckpt / "state.json").read_text())["algorithm"]["seen"]}
    out: dict[int, list[int]] = {}
    for r in ranks:
        for step, idx in states[r]:
            if step in steps:
                out.setdefault(step, []).extend(idx)
    return out


def _in_process(out: Path, steps: int, resume: bool = False) -> None:
    sys.path.insert(0, str(HERE))
    import ddp_toy

    from genfw.core.config import resolve_run
    from genfw.core.trainer import train

    torch.set_num_threads(1)
    reg = ddp_toy.registry()
    cfg, resolved = resolve_run(ddp_toy.raw_run(str(out), steps), reg)
    train(cfg, resolved, reg, resume=resume, progress=False)


def _epochs(per_step: dict[int, list[int]]) -> list[list[int]]:
    flat = [i for s in sorted(per_step) for i in per_step[s]]
    return [flat[k:k + 24] for k in range(0, len(flat), 24)]


def test_resume_two_processes_on_one_continues_the_data_stream(reference, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(_ckpt(reference, 4), _ckpt(out, 4))  # 2 processes x 4 steps: 16 items read
    (out / "checkpoints" / "latest").write_text("00000004\n")
    _in_process(out, 12, resume=True)  # one process, 2 items a step: 8 steps, positions 16..31
    assert "written by 2 process(es), continued on 1" in capsys.readouterr().err
    before = _seen(_ckpt(reference, 4), [0, 1], range(4))
    after = _seen(_ckpt(out, 12), [0], range(4, 12))
    assert _seen(_ckpt(out, 12), [0], range(4)) == _seen(_ckpt(reference, 4), [0], range(4))  # rank 0's own
    epochs = _epochs({**before, **after})
    assert sorted(epochs[0]) == list(range(24))  # no item twice, none skipped
    assert len(set(epochs[1])) == 8
    # the same items, step for step, as the uninterrupted 2-process run at those positions
    ref = _seen(_ckpt(reference, STEPS), [0, 1], range(STEPS))
    for k in range(4, 8):  # reference step k read positions 4k..4k+3 = one-process steps 2k-4, 2k-3
        assert sorted(after[2 * k - 4] + after[2 * k - 3]) == sorted(ref[k])


def test_resume_one_process_on_two_continues_the_data_stream(reference, tmp_path):
    out = tmp_path / "run"
    _in_process(out, 6)  # one process, 2 items a step: positions 0..11
    done = _run(_torchrun(SINGLE_NODE, out, 9, "--resume"))  # then 2 processes: 3 steps, positions 12..23
    assert "written by 1 process(es), continued on 2" in done.stderr
    final = _ckpt(out, 9)
    before = _seen(final, [0], range(6))
    assert _seen(final, [1], range(6)) == before  # new rank 1 started from saved rank (1 mod 1)'s state
    after = _seen(final, [0, 1], range(6, 9))
    assert sorted(_epochs({**before, **after})[0]) == list(range(24))
    ref = _seen(_ckpt(reference, STEPS), [0, 1], range(STEPS))
    for k in range(3, 6):  # reference step k read positions 4k..4k+3, as these 2-process steps do
        assert sorted(after[k + 3]) == sorted(ref[k])


def _trainer_handles_sigterm() -> bool:
    from genfw.core import trainer

    return signal.SIGTERM in getattr(trainer, "STOP_SIGNALS", ())


@pytest.mark.skipif(not _trainer_handles_sigterm(), reason="the trainer does not handle SIGTERM in this build")
def test_sigterm_to_torchrun_checkpoints_every_rank_then_resumes_bit_exact(reference, tmp_path):
    """The preemption recipe: a scheduler's SIGTERM reaches torchrun, which forwards it to every
    worker; they stop together at the next step boundary with a checkpoint, and the same command
    with --resume finishes the run as if nothing happened."""
    out = tmp_path / "run"
    job = subprocess.Popen(_torchrun(SINGLE_NODE, out, STEPS, "--delay", DELAY, "--resume"), env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out, job)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=TIMEOUT)
    assert job.returncode != 0  # torchrun reports the stopped workers
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    state = json.loads((latest / "state.json").read_text())
    assert state["reason"] == "interrupt" and state["step"] < STEPS, err[-3000:]
    assert len(_ranks(latest)) == 2  # every rank's state, saved at the step they stopped at
    done = _run(_torchrun(SINGLE_NODE, out, STEPS, "--resume"))
    assert f"resumed from {latest}" in done.stderr
    _assert_same_run(reference, out)
