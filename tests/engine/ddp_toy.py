"""Entry for the distributed tests, launched by torchrun (or imported for single-process parts):

    python ddp_toy.py OUT STEPS [--batch B] [--delay S] [--resume] [--pid-dir DIR] [--sync-bn]
                      [--late-restart S]

The algorithm is the toy GAN plus a per-rank record of the dataset indices each rank trained on
(its extra_state): per-rank algorithm state that the checkpoint must keep, and the data order the
world-size tests check.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import engine_toy  # noqa: E402
from genfw.core.gan import GANAlgorithm, GANConfig  # noqa: E402

EPOCH = 24  # items of the toy dataset


class IndexGAN(GANAlgorithm):
    def __init__(self, cfg=None) -> None:
        super().__init__(cfg)
        self.seen: list[list] = []

    def prepare(self, batch, step):
        self.seen.append([int(step), [int(i) for i in batch["index"].tolist()]])
        return super().prepare(batch, step)

    def extra_state(self):
        return {"seen": self.seen}

    def load_extra(self, state, tensors):
        self.seen = [list(x) for x in state.get("seen", [])]


def registry():
    from genfw.registry import Registrar

    reg = engine_toy.registry()
    Registrar(reg, "ddptest").register("algorithm", "index-gan", IndexGAN, config=GANConfig)
    return reg


def raw_run(out: str, steps: int, batch: int = 2, delay: float = 0.0, sync_bn: bool = False) -> dict:
    raw = engine_toy.tiny_run(out, steps=steps, algorithm="ddptest.index-gan", batch_size=batch,
                              checkpoint_every=2, keep_last=50, sync_batchnorm=sync_bn)
    raw["data"].update(count=EPOCH, delay=delay)
    return raw


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("steps", type=int)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--pid-dir")
    ap.add_argument("--sync-bn", action="store_true")
    ap.add_argument("--late-restart", type=float, default=0.0,
                    help="seconds rank 1 of a restarted attempt waits before joining the process group")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rank = os.environ.get("RANK", "0")
    restarted = False
    if args.pid_dir:  # lets a test kill one chosen worker of one chosen (re)start
        name = f"rank{rank}-r{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        os.makedirs(args.pid_dir, exist_ok=True)
        # not TORCHELASTIC_RESTART_COUNT: on several nodes it counts only the node's own restarts
        restarted = any(f.startswith(f"rank{rank}-r") for f in os.listdir(args.pid_dir))
        with open(os.path.join(args.pid_dir, name), "w") as fh:
            fh.write(str(os.getpid()))
    from genfw.core.checkpoint import network_tensors
    from genfw.core.config import resolve_run
    from genfw.core.trainer import Trainer

    if args.pid_dir:  # imports done: the process group comes next
        open(os.path.join(args.pid_dir, f"imported-rank{rank}-{os.getpid()}"), "w").close()
    if args.late_restart and rank == "1" and restarted:
        # the restarted rank 0 reaches the store first: once it is about to, rank 1 waits a while more
        while sum(f.startswith("imported-rank0-") for f in os.listdir(args.pid_dir)) < 2:
            time.sleep(0.01)
        time.sleep(args.late_restart)
    reg = registry()
    cfg, resolved = resolve_run(raw_run(args.out, args.steps, args.batch, args.delay, args.sync_bn), reg)
    trainer = Trainer(cfg, resolved, reg, resume=args.resume, progress=False)
    trainer.run()
    # every rank's own copy of the weights, to check the replicas stayed identical
    digest = hashlib.sha256()
    for key, t in sorted(network_tensors(trainer.algo).items()):
        digest.update(key.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    with open(os.path.join(args.out, f"weights-rank{os.environ.get('RANK', '0')}.sha256"), "w") as fh:
        fh.write(digest.hexdigest())


if __name__ == "__main__":
    main()
