"""`genfw` with the toy engine plugin as its registry (subprocess fault tests): python cli_toy.py ARGS."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "engine"))
import torch  # noqa: E402

torch.set_num_threads(1)
import engine_toy  # noqa: E402
import genfw.registry  # noqa: E402

_reg = engine_toy.registry()
genfw.registry.get_registry = lambda reload=False: _reg
from genfw.cli import main  # noqa: E402

sys.argv[0] = "genfw"
main()
