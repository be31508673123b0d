"""The documented commands (docs/engine.md, "Distributed"): `genfw run` under torchrun, and
`genfw bench ddp`. `torchrun` is `python -m torch.distributed.run`; the tests call it that way so
they use this interpreter's torch."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# the recipes' commands (docs/engine.md), shortened to 2 steps of 4 images a process
SINGLE = "--standalone --nproc-per-node 2"
TWO_NODES = ("--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{port} "
             "--rdzv-id introvae-2n")
RUN = "-m genfw run --plugin introvae --out {out} --set train.sync_batchnorm=true --resume"
SHORT = ["--steps", "2", "--set", "train.batch_size=4", "--set", "train.sample_every=0",
         "--set", "train.log_every=1", "--no-progress"]


def _cmd(launch: str, out) -> list[str]:
    return [*TORCHRUN, *launch.split(), *RUN.format(out=out).split(), *SHORT]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final(out) -> dict:
    ck = out / "checkpoints" / "00000002"
    files = {n: load_file(str(ck / n)) for n in ("networks.safetensors", "optimizers.safetensors")}
    return {"tensors": files, "ranks": json.loads((ck / "ranks.json").read_text())}


def test_single_node_and_two_node_recipes_train_introvae_identically(tmp_path):
    one = tmp_path / "introvae-2p"
    done = subprocess.run(_cmd(SINGLE, one), env=_env(), capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting from step 0" in done.stderr  # --resume on a fresh --out starts it
    log = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2] and log[-1]["images"] == 16  # 2 processes x 4 x 2

    two = tmp_path / "introvae-2n"
    cmd = _cmd(TWO_NODES.format(port=_free_port()), two)
    nodes = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path) for _ in range(2)]
    for p in nodes:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    a, b = _final(one), _final(two)
    for name in a["tensors"]:
        x, y = a["tensors"][name], b["tensors"][name]
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    assert a["ranks"] == b["ranks"] and a["ranks"]["world_size"] == 2
    r0, r1 = a["ranks"]["ranks"]
    assert r0["rng"] != r1["rng"]  # two ranks with their own streams, each restored as saved


def test_bench_ddp_reports_both_setups_and_the_collective_share():
    done = subprocess.run([sys.executable, "-m", "genfw", "bench", "ddp", "--quick", "--device", "cpu"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert lines[0]["name"] == "machine"
    rec = lines[1]
    assert rec["benchmark"] == "core.ddp" and rec["name"] == "ddp-cpu-gloo" and "error" not in rec
    assert rec["processes"] == 2 and rec["global_batch"] == 2 * rec["per_process_batch"]
    assert rec["solo_images_per_s"] > 0 and rec["ddp_images_per_s"] > 0
    assert 0 < rec["collective_share"] < 1
    parts = rec["grad_average_share"] + rec["buffer_broadcast_share"] + rec["flag_share"]
    assert parts == pytest.approx(rec["collective_share"], abs=0.05)  # medians of the parts
