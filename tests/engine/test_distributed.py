"""Two CPU processes (gloo on 127.0.0.1) train the same run: replicas stay identical and move."""
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, result: str) -> None:
    sys.path.insert(0, str(HERE))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import engine_toy
    from genfw.core.checkpoint import network_tensors
    from genfw.core.config import resolve_run
    from genfw.core.trainer import Trainer

    reg = engine_toy.registry()
    raw = engine_toy.tiny_run(out, steps=4, checkpoint_every=2)
    cfg, resolved = resolve_run(raw, reg)
    t = Trainer(cfg, resolved, reg, progress=False)
    t.run()
    save_file({k: v.contiguous() for k, v in network_tensors(t.algo).items()}, f"{result}.{rank}")
    # the data each rank saw were disjoint shards of the same order
    save_file({"pos": torch.tensor([t.position])}, f"{result}.pos{rank}")


@pytest.mark.slow  # subprocesses: ~15 s on an idle 2-core CPU
def test_two_process_training_keeps_replicas_identical(tmp_path):
    port = _free_port()
    out, result = str(tmp_path / "run"), str(tmp_path / "w")
    mp.start_processes(_worker, args=(2, port, out, result), nprocs=2, join=True, start_method="spawn")
    w0, w1 = load_file(f"{result}.0"), load_file(f"{result}.1")
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    start = load_file(str(tmp_path / "run" / "checkpoints" / "00000002" / "networks.safetensors"))
    final = load_file(str(tmp_path / "run" / "checkpoints" / "00000004" / "networks.safetensors"))
    assert all(torch.equal(final[k], w0[k]) for k in w0)  # rank 0 checkpointed what it trained
    assert any(not torch.equal(start[k], final[k]) for k in w0 if k.endswith("weight"))
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and '"images": 32' in log[-1]  # 2 ranks x 4 images x 4 steps
