import math

import pytest
import torch

from genfw.core.checkpoint import join_state, split_state
from genfw.core.schedulers import CosineDecay, FadeIn, FadeInConfig, LinearDecay, StepDecay, fade_in_at


def test_linear_decay_values():
    f = LinearDecay(constant_steps=4, decay_steps=8, final=0.0)
    assert [f(s) for s in (0, 3, 4, 6, 8, 12, 20)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.0, 0.0]


def test_step_and_cosine():
    assert [StepDecay(3, 0.5)(s) for s in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    c = CosineDecay(total_steps=12, warmup_steps=2, final=0.0)
    assert c(0) == 0.5 and c(1) == 1.0
    assert c(2) == pytest.approx(1.0)
    assert c(7) == pytest.approx(0.5)  # half way through the cosine part
    assert c(12) == pytest.approx(0.0, abs=1e-12)


def test_lr_scheduler_from_registry_drives_optimizer(registry):
    make = registry.build({"type": "core.linear-decay", "constant_steps": 2, "decay_steps": 2}, kind="scheduler")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.0])
    # its state is plain data (checkpoints never pickle) and restores the position
    tensors = {}
    tree = split_state(sched.state_dict(), "s", tensors)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s2 = make(opt2)
    s2.load_state_dict(join_state(tree, tensors))
    assert s2.last_epoch == 5 and s2.get_last_lr() == pytest.approx(sched.get_last_lr())


def test_fade_in_hand_computed():
    kw = dict(first_images=100, grow_images=40, stabilise_images=60, num_stages=3)
    assert fade_in_at(0, **kw).stage == 0 and fade_in_at(99, **kw).alpha == 1.0
    p = fade_in_at(110, **kw)
    assert (p.stage, p.alpha, p.growing) == (1, 0.25, True)
    p = fade_in_at(150, **kw)
    assert (p.stage, p.alpha, p.growing) == (1, 1.0, False)
    p = fade_in_at(200 + 30, **kw)
    assert (p.stage, p.alpha) == (2, 0.75)
    p = fade_in_at(100 + 2 * 100, **kw)
    assert (p.stage, p.alpha, p.done) == (2, 1.0, True)


def test_fade_in_stateful(registry):
    f = registry.build({"type": "core.fade-in", "first_images": 8, "grow_images": 8, "stabilise_images": 8,
                        "num_stages": 2, "images_per_step": 4}, kind="scheduler")
    assert isinstance(f, FadeIn)
    for _ in range(3):
        f.step()
    assert f.images == 12 and f.stage == 1 and f.alpha == 0.5
    g = FadeIn(FadeInConfig(first_images=8, grow_images=8, stabilise_images=8, num_stages=2))
    g.load_state_dict(f.state_dict())
    assert g.alpha == 0.5 and g.images_per_step == 4
    assert not math.isnan(g.alpha)
