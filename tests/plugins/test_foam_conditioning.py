"""FOAM conditioning as the paper: everything average-pooled from the top level, both branches of a
growing stage see what their stage was trained on, D judges G's full output (eq. 9-10), and the
previous stage's weights stay fixed while growing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genfw import Context
from genfw.core.step import run_step
from genfw.registry import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def make_algo(registry, size=16, **over):
    spec = {"type": "foam.algorithm",
            "generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8, "latent_channels": 8},
            "discriminator": {"type": "foam.discriminator", "base_channels": 4, "max_channels": 8},
            "use_feature_loss": False, "first_images": 4, "grow_images": [1000], "stabilise_images": 4,
            "pool_size": 4, **over}
    algo = registry.build(spec, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=size, channels=3, num_attributes=2,
                       has_landmarks=True, has_mask=True))
    return algo


def batch(registry, n=2, size=16, seed=0):
    ds = registry.build({"type": "core.synthetic-faces", "image_size": size, "length": 64, "seed": seed,
                         "attributes": ["Smiling", "Male"]})
    items = [ds[i] for i in range(n)]
    out = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    out["mask"] = registry.build({"type": "core.random-rect"})(n, size, size, generator=torch.Generator().manual_seed(seed))
    return out


def test_masks_and_maps_are_average_pooled_from_the_top(registry):
    algo = make_algo(registry)
    b = batch(registry)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 0, 0] = 1                      # one hole pixel of the top level
    c = algo._condition(b["image"], mask, b["landmarks"], 8, low=True)
    assert c["mask"][0, 0, 0, 0] == pytest.approx(0.25) and c["mask"][0, 0, 0, 1] == 0
    assert c["low_mask"] is None and c["low_lmap"] is None   # G / D pool themselves: the same thing
    top = algo.encoder(b["landmarks"], 16)
    assert torch.allclose(c["lmap"], F.avg_pool2d(top, 2))
    # the observation is pooled after the hole is greyed: no hole content leaks into coarse pixels
    x = b["image"] * 2 - 1
    assert torch.allclose(c["obs"], F.avg_pool2d((1 - mask) * x, 2))
    # growing into 8 px, the low branch pools the 8 px maps to 4 px: exactly what stage 4 px trained on
    c4 = algo._condition(b["image"], mask, b["landmarks"], 4, low=False)
    assert torch.allclose(F.avg_pool2d(c["lmap"], 2), c4["lmap"], atol=1e-6)
    assert torch.allclose(F.avg_pool2d(c["mask"], 2), c4["mask"], atol=1e-6)


def test_rendered_maps_and_max_masks_are_options(registry):
    algo = make_algo(registry, landmark_maps="rendered", mask_pooling="max")
    b = batch(registry)
    c = algo._condition(b["image"], b["mask"], b["landmarks"], 8, low=True)
    assert torch.equal(c["lmap"], algo.encoder(b["landmarks"], 8))
    assert torch.equal(c["low_lmap"], algo.encoder(b["landmarks"], 4))   # rendered at 4 px, as stage 1 saw it
    assert set(c["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(c["low_mask"], F.max_pool2d(c["mask"], 2))
    # G's fixed branch really receives the rendered low map: a different one changes the output
    algo.images = 4 + 500   # growing into 8 px
    st = algo.progress()
    assert st.stage == 2 and st.growing
    G = algo.nets["G"]
    a = torch.ones(2, 2)
    with torch.no_grad():
        base = G(c["obs"], c["mask"], c["lmap"], a, stage=2, alpha=st.alpha, low_mask=c["low_mask"],
                 low_landmarks=c["low_lmap"])["low"]
        other = G(c["obs"], c["mask"], c["lmap"], a, stage=2, alpha=st.alpha, low_mask=c["low_mask"],
                  low_landmarks=torch.zeros_like(c["low_lmap"]))["low"]
    assert not torch.allclose(base, other)


@pytest.mark.parametrize("d_input", ["output", "composite"])
def test_d_judges_the_full_output_by_default(registry, d_input):
    torch.manual_seed(0)
    algo = make_algo(registry, d_input=d_input, mask_pooling="max")
    algo.images = 4 + 500
    s = algo.prepare(batch(registry), 0)
    s["output"].retain_grad()
    algo._g_loss(s)["adv"].backward()
    context = (s["mask"] == 0).expand_as(s["output"])
    g = s["output"].grad
    if d_input == "output":       # eq. 9: the context of I_syn gets an adversarial gradient too
        assert torch.equal(s["fake"], s["output"]) and g[context].abs().sum() > 0
    else:
        assert g[context].abs().sum() == 0 and g[~context].abs().sum() > 0


def _params(module):
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def test_previous_stage_weights_stay_fixed_while_growing(registry):
    torch.manual_seed(0)
    algo = make_algo(registry, lr=1e-2, first_images=8)
    b = batch(registry, n=4)
    for i in range(2):                       # stage 1 (4 px)
        assert algo.progress().stage == 1
        run_step(algo, b, i)
    end_of_stage_1 = _params(algo.nets["G"])
    G = algo.nets["G"]
    probe = algo._condition(b["image"], b["mask"], b["landmarks"], 4, low=False)
    x_low = G._inputs(probe["obs"], probe["mask"], probe["lmap"])
    for i in range(2, 6):                    # growing into 8 px
        assert algo.progress().growing
        run_step(algo, b, i)
        with torch.no_grad():
            low_now = G._fixed_branch(x_low, b["attributes"], 1, probe["mask"])[0]
        if i == 2:
            low_first = low_now
        assert torch.equal(low_now, low_first)           # G^fixed_1 answers the same every step
    assert G.fixed_level == 1
    fixed = G.fixed_state()
    assert set(fixed) == set(G.branch_parameters(1)) and not any(k.startswith("to_filter") for k in fixed)
    for k, t in fixed.items():
        assert torch.equal(t, end_of_stage_1[k]), k    # the snapshot is stage 1 as it ended ...
    shared = ["latent.conv_in.conv.weight", "from_input.0.conv.weight", "to_rgb.0.0.conv.weight"]
    now = _params(G)
    # ... while the shared levels keep training in the high branch (latent block) and stage-1-only
    # layers are untouched by the high branch
    assert not torch.equal(now[shared[0]], fixed[shared[0]])
    assert torch.equal(now[shared[1]], fixed[shared[1]]) and torch.equal(now[shared[2]], fixed[shared[2]])


def test_snapshot_travels_with_the_checkpoint(registry):
    torch.manual_seed(0)
    algo = make_algo(registry)
    b = batch(registry, n=4)
    algo.images = 4 + 10
    run_step(algo, b, 0)
    tensors = algo.extra_tensors()
    state = algo.extra_state()
    assert state["fixed_level"] == 1 and any(k.startswith("fixed/") for k in tensors)
    other = make_algo(registry)
    other.load_extra(state, tensors)
    G, H = algo.nets["G"], other.nets["G"]
    assert H.fixed_level == 1
    for k, t in G.fixed_state().items():
        assert torch.equal(H.fixed_state()[k], t)
