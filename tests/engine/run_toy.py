"""Subprocess entry for the resume test: python run_toy.py OUT STEPS DELAY [--resume]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

torch.set_num_threads(1)
import engine_toy  # noqa: E402
from genfw.core.config import resolve_run  # noqa: E402
from genfw.core.trainer import train  # noqa: E402

out, steps, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
reg = engine_toy.registry()
raw = engine_toy.tiny_run(out, steps=steps)
raw["data"]["delay"] = delay
raw["train"]["checkpoint_every"] = 3
raw["train"]["keep_last"] = 2
cfg, resolved = resolve_run(raw, reg)
train(cfg, resolved, reg, resume="--resume" in sys.argv, progress=False)
