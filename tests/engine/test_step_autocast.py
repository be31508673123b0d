"""The step's single autocast region: weight casts are shared until an optimizer changes a weight."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from genfw import Algorithm, Context, Phase
from genfw.core.step import run_step


class _CountWeightCasts(TorchDispatchMode):
    """Counts fp32 -> bf16 copies of tensors shaped like the toy weight (8 x 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func is torch.ops.aten._to_copy.default and args[0].dtype == torch.float32
                and kwargs.get("dtype") == torch.bfloat16 and tuple(args[0].shape) == (8, 4)):
            self.casts += 1
        return func(*args, **kwargs)


class TwoPhases(Algorithm):
    """`a` is used in prepare, stepped in phase 1, then used and stepped again in phase 2."""

    def build_networks(self, ctx):
        torch.manual_seed(0)
        return {"a": nn.Linear(4, 8, bias=False)}

    def build_optimizers(self, nets):
        return {"a": torch.optim.SGD(nets["a"].parameters(), lr=0.5)}

    def prepare(self, batch, step):
        return {"x": batch["x"], "y0": self.nets["a"](batch["x"])}

    def phases(self, step):
        return [Phase("one", ("a",), self._one), Phase("two", ("a",), self._two)]

    def _one(self, s):
        y = self.nets["a"](s["x"])  # same weights as in prepare: may share prepare's cast
        return {"loss": (s["y0"] * y).float().sum()}

    def _two(self, s):
        y = self.nets["a"](s["x"])  # must see the weights phase one just updated
        self.seen = {"y_two": y.detach(), "w_two": self.nets["a"].weight.detach().clone()}
        return {"loss": y.float().sum()}


def _algo() -> TwoPhases:
    algo = TwoPhases()
    algo.setup(Context(registry=None))
    return algo


def test_later_phase_sees_the_updated_weight_not_a_stale_cast():
    algo = _algo()
    x = torch.randn(3, 4)
    w0 = algo.nets["a"].weight.detach().clone()
    run_step(algo, {"x": x}, 0, precision="bf16")
    state = algo.seen
    w_two = state["w_two"]
    assert not torch.equal(w_two, w0)  # phase one really moved the weight
    expected = x.bfloat16() @ w_two.bfloat16().t()
    stale = x.bfloat16() @ w0.bfloat16().t()
    assert not torch.allclose(expected.float(), stale.float())
    assert torch.allclose(state["y_two"].float(), expected.float(), rtol=1e-2, atol=1e-2)


def test_prepare_and_first_phase_share_one_cast_per_weight():
    algo = _algo()
    counter = _CountWeightCasts()
    with counter:
        run_step(algo, {"x": torch.randn(3, 4)}, 0, precision="bf16")
    # prepare + phase one: one cast (shared); phase two, after the update: one more
    assert counter.casts == 2


def test_bf16_step_gradients_match_fp32_closely():
    x = torch.randn(16, 4)
    results = {}
    for precision in ("fp32", "bf16"):
        algo = _algo()
        run_step(algo, {"x": x}, 0, precision=precision)
        results[precision] = algo.nets["a"].weight.detach()
    assert torch.allclose(results["fp32"], results["bf16"], rtol=0.05, atol=0.05)
