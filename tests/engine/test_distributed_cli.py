"""The documented commands of docs/engine.md's "Distributed" section, read from the doc itself:
`genfw run` under torchrun on one node and on two "nodes", and `genfw bench ddp`. `torchrun` is
`python -m torch.distributed.run`; the tests call it that way so they use this interpreter's
torch. (The SLURM script needs SLURM; its torchrun line is the two-node command.)"""
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"
SHORT = ["--steps", "2", "--set", "train.batch_size=4", "--set", "train.sample_every=0",
         "--set", "train.log_every=1", "--no-progress"]  # the recipes, shortened to 2 steps of 4 images


def _doc_command(prefix: str) -> list[str]:
    """The one command of docs/engine.md's Distributed section that starts with `prefix`, as argv
    with this interpreter's torchrun / genfw."""
    text = DOC.read_text()
    section = text[text.index("## Distributed"):text.index("## Sampling")]
    lines = [ln for ln in section.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, f"expected one documented command starting with {prefix!r}, found {lines}"
    argv = shlex.split(lines[0])
    head = {"torchrun": TORCHRUN, "genfw": [sys.executable, "-m", "genfw"]}[argv[0]]
    return [*head, *argv[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final(out) -> dict:
    ck = out / "checkpoints" / "00000002"
    files = {n: load_file(str(ck / n)) for n in ("networks.safetensors", "optimizers.safetensors")}
    return {"tensors": files, "ranks": json.loads((ck / "ranks.json").read_text())}


def test_single_node_and_two_node_recipes_train_introvae_identically(tmp_path):
    single = _doc_command("torchrun --standalone")
    done = subprocess.run(single + SHORT, env=_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting from step 0" in done.stderr  # --resume on a fresh --out starts it
    one = tmp_path / single[single.index("--out") + 1]
    log = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2] and log[-1]["images"] == 16  # 2 processes x 4 x 2

    # the two-node command, twice on this machine (two "nodes" of one process), on a free port
    nodes_cmd = [a.replace(":29500", f":{_free_port()}") for a in _doc_command("torchrun --nnodes 2")]
    nodes = [subprocess.Popen(nodes_cmd + SHORT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path) for _ in range(2)]
    for p in nodes:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    two = tmp_path / nodes_cmd[nodes_cmd.index("--out") + 1]
    assert two != one
    a, b = _final(one), _final(two)
    for name in a["tensors"]:
        x, y = a["tensors"][name], b["tensors"][name]
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    assert a["ranks"] == b["ranks"] and a["ranks"]["world_size"] == 2
    r0, r1 = a["ranks"]["ranks"]
    assert r0["rng"] != r1["rng"]  # two ranks with their own streams


def test_bench_ddp_reports_both_setups_and_the_collective_share():
    done = subprocess.run(_doc_command("genfw bench ddp"), env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert lines[0]["name"] == "machine"
    rec = lines[1]
    assert rec["benchmark"] == "core.ddp" and rec["name"].startswith("ddp-") and "error" not in rec
    assert rec["solo_images_per_s"] > 0
    if rec["processes"] == 1:  # a machine with one GPU: the smoke run
        assert "smoke" in rec["note"]
        return
    assert rec["processes"] == 2 and rec["global_batch"] == 2 * rec["per_process_batch"]
    assert rec["ddp_images_per_s"] > 0 and 0 < rec["collective_share"] < 1
    parts = rec["grad_average_share"] + rec["buffer_broadcast_share"] + rec["flag_share"]
    # ratios of sums over the same rounds: the parts add up to the whole up to the 4-digit rounding
    assert parts == pytest.approx(rec["collective_share"], abs=3e-4)
