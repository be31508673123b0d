"""FOAM plugin: landmark rendering, FOAM transform / read / write, networks, losses, schedule,
history pool, checkpoint round-trip across a growth boundary, and a short run."""
from __future__ import annotations

import json

import pytest
import torch

from genfw import Context
from genfw.core.step import run_step
from genfw.plugins.foam.algorithm import schedule_at
from genfw.plugins.foam.filters import foam_coefficients, foam_read, foam_transform, foam_write
from genfw.plugins.foam.landmarks import render_dots, render_sketch, sketch_segments
from genfw.plugins.foam.losses import boundary_l1, boundary_weight, masked_l1
from genfw.plugins.foam.networks import (DiscriminatorConfig, FOAMDiscriminator, FOAMGenerator, GeneratorConfig,
                                         input_widths, widths)
from genfw.registry import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


# --- landmarks ---------------------------------------------------------------------------------
def test_sketch_segments_cover_the_parts():
    seg = sketch_segments().tolist()
    assert len(seg) == 16 + 4 + 4 + 3 + 4 + 6 + 6 + 12 + 8
    assert [41, 36] in seg and [47, 42] in seg and [59, 48] in seg and [67, 60] in seg  # closed loops
    assert [16, 17] not in seg and [26, 27] not in seg and [30, 31] not in seg        # parts stay apart


def test_sketch_draws_a_horizontal_segment():
    lm = torch.full((1, 68, 2), 0.5)
    # all points on one horizontal line from x = 0.25 to 0.75 at y = 0.53125 (a pixel-centre row of 16)
    lm[0, :, 0] = torch.linspace(0.25, 0.75, 68)
    lm[0, :, 1] = 8.5 / 16
    img = render_sketch(lm, 16, width=0.75)
    assert img.shape == (1, 1, 16, 16)
    assert torch.allclose(img[0, 0, 8, 5:12], torch.ones(7))     # on the line
    assert img[0, 0, 8, 0] == 0 and img[0, 0, 8, 15] == 0         # beyond its ends
    assert img[0, 0, 6].sum() == 0 and img[0, 0, 10].sum() == 0   # 2 px away: outside width 0.75


def test_dots_peak_at_the_points_and_any_size():
    lm = torch.full((2, 68, 2), 0.5)
    lm[:, :, 0] = 2.5 / 8   # pixel (row 4, col 2) centre of an 8 px image
    lm[:, :, 1] = 4.5 / 8
    for size in (8, 32):
        img = render_dots(lm, size, sigma=1.0)
        assert img.shape == (2, 1, size, size) and float(img.max()) <= 1.0
    img = render_dots(lm, 8, sigma=1.0)
    assert img[0, 0, 4, 2] == pytest.approx(1.0)
    assert img[0, 0, 4, 3] == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), rel=1e-5)


def test_sketch_of_synthetic_faces_sits_on_the_face(registry):
    ds = registry.build({"type": "core.synthetic-faces", "image_size": 32, "length": 2})
    lm = torch.stack([ds[i]["landmarks"] for i in range(2)])
    img = registry.build({"type": "foam.sketch"})(lm, 32)
    assert img.shape == (2, 1, 32, 32) and 0.02 < float((img > 0).float().mean()) < 0.6


# --- FOAM transform, read and write --------------------------------------------------------------
@pytest.mark.parametrize("alpha,beta,gamma", [(0.0, 0.0, 0.0), (0.25, 0.5, 0.0), (0.5, 1.0, 0.0),
                                              (0.75, 0.5, 0.5), (1.0, 0.0, 1.0)])
def test_foam_coefficients(alpha, beta, gamma):
    assert foam_coefficients(alpha) == pytest.approx((beta, gamma))


def test_foam_transform_endpoints_and_middle():
    f = torch.tensor([0.0, 0.2, 0.9, 1.0])
    assert torch.equal(foam_transform(f, 0.0), torch.zeros(4))
    assert torch.allclose(foam_transform(f, 0.5), f)
    assert torch.equal(foam_transform(f, 1.0), torch.ones(4))
    assert torch.allclose(foam_transform(f, 0.75), 0.5 * f + 0.5)
    assert torch.allclose(foam_transform(f, 0.25), 0.5 * f)


def test_foam_read_by_hand():
    obs = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0, 0] = 1
    read = torch.full((1, 1, 4, 4), 0.25)
    high, low = foam_read(obs, mask, read)
    expect_high = 0.25 * obs
    expect_high[..., 0, 0] = 0
    assert torch.allclose(high, expect_high)
    # low: mean over 2x2 of 0.75 * (1 - M) * obs; top-left block loses pixel value 1
    assert torch.allclose(low, torch.tensor([[[[0.75 * (2 + 5 + 6) / 4, 0.75 * (3 + 4 + 7 + 8) / 4],
                                               [0.75 * (9 + 10 + 13 + 14) / 4, 0.75 * (11 + 12 + 15 + 16) / 4]]]]))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_foam_write_by_hand(alpha):
    high = torch.full((1, 1, 2, 2), 10.0)
    low = torch.full((1, 1, 1, 1), 2.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    write_raw = torch.tensor([[[[0.2, 0.9], [0.5, 0.6]]]])
    wt = foam_transform(write_raw, alpha)
    out = foam_write(high, low, mask, wt, alpha)
    ctx = alpha * 10 + (1 - alpha) * 2
    assert out[0, 0, 0, 1] == pytest.approx(ctx) and out[0, 0, 1, 0] == pytest.approx(ctx)
    for (i, j) in ((0, 0), (1, 1)):
        w = float(wt[0, 0, i, j])
        assert out[0, 0, i, j] == pytest.approx(w * 10 + (1 - w) * 2)
    if alpha == 0.0:
        assert torch.allclose(out, torch.full_like(out, 2.0))
    if alpha == 1.0:
        assert torch.allclose(out, high)


# --- networks ----------------------------------------------------------------------------------
def small_g(**kw):
    return FOAMGenerator(GeneratorConfig(image_size=16, base_channels=4, max_channels=8, latent_channels=8, **kw))


def test_widths_follow_table_3():
    # table 3: 512 from 4 to 64 px, then halving up to 32 channels at 1024 px; 1x1 input convs w(2s), 16 at the top
    assert widths(1024, 32, 512) == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    assert input_widths(1024, 32, 512) == [512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("skip", ["concat", "residual"])
def test_generator_every_stage_and_alpha(skip):
    torch.manual_seed(0)
    g = small_g(num_attributes=2, skip=skip)
    for stage in (1, 2, 3):
        s = 4 * 2 ** (stage - 1)
        for alpha in (0.0, 0.4, 1.0):
            x = torch.rand(2, 3, s, s) * 2 - 1
            m = torch.zeros(2, 1, s, s)
            m[..., : s // 2, : s // 2] = 1
            out = g(x, m, torch.rand(2, 1, s, s), torch.ones(2, 2), stage=stage, alpha=alpha)
            assert out["output"].shape == (2, 3, s, s)
            if stage > 1 and alpha < 1:
                assert out["low"].shape == (2, 3, s // 2, s // 2)
                assert out["filter_read"].shape == out["filter_write"].shape == (2, 1, s, s)
                f = out["filter_read"].detach()
                assert 0 <= float(f.min()) and float(f.max()) <= 1


def test_generator_growing_freezes_low_branch_but_trains_filters():
    torch.manual_seed(0)
    g = small_g()
    x, m = torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 4:10] = 1
    out = g(x, m, torch.rand(2, 1, 16, 16), stage=3, alpha=0.3)
    out["output"].square().mean().backward()
    assert g.to_filter_read[1][2].weight.grad.abs().sum() > 0        # ToFilter(read) trains
    assert g.to_filter_write[2][2].weight.grad.abs().sum() > 0
    assert g.to_rgb[2][2].weight.grad.abs().sum() > 0                # high branch
    assert g.to_rgb[1][2].weight.grad is None                        # low branch's ToRGB is fixed
    assert g.from_input[1].conv.weight.grad is None                  # and its input layer


def test_generator_alpha_one_is_the_high_branch_alone():
    torch.manual_seed(0)
    g = small_g()
    x, m, lm = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    out = g(x, m, lm, stage=3, alpha=1.0)
    img, _ = g.branch(torch.cat([x, m, lm], 1), None, 3)
    assert torch.allclose(out["output"], img)


def test_generator_alpha_zero_is_the_upsampled_low_branch():
    torch.manual_seed(0)
    g = small_g()
    x, m = torch.rand(2, 3, 16, 16) * 2 - 1, torch.zeros(2, 1, 16, 16)
    m[..., 2:9, 3:12] = 1
    out = g(x, m, torch.rand(2, 1, 16, 16), stage=3, alpha=0.0)
    assert torch.equal(out["filter_read_t"], torch.zeros_like(out["filter_read_t"]))
    assert torch.allclose(out["output"], torch.nn.functional.interpolate(out["low"], scale_factor=2))


def test_discriminator_stages_and_heads():
    torch.manual_seed(0)
    d = FOAMDiscriminator(DiscriminatorConfig(image_size=16, base_channels=4, max_channels=8, num_attributes=3))
    for stage in (1, 2, 3):
        s = 4 * 2 ** (stage - 1)
        out = d(torch.rand(2, 3, s, s), torch.rand(2, 1, s, s), stage=stage, alpha=0.5)
        assert out["cls"].shape == (2,) and out["attr"].shape == (2, 3)
        (out["cls"].sum() + out["attr"].sum()).backward()
    assert d.from_input[1].conv.weight.grad.abs().sum() > 0   # faded-in lower input path trains while growing


# --- losses ------------------------------------------------------------------------------------
def test_masked_l1_by_hand():
    t = torch.zeros(1, 1, 2, 2)
    o = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # hole mean = 1/4, context mean = (2+3+4)/4
    assert masked_l1(t, o, m, 0.7) == pytest.approx(0.7 * 0.25 + 0.3 * 9 / 4)


def test_boundary_weight_by_hand():
    m = torch.zeros(1, 1, 1, 7)
    m[..., 3] = 1
    w = boundary_weight(m, k=3)
    # 3x3 mean without padding on a 1 x 7 strip = mean over the in-image neighbours of the row
    expect = torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1 / 3, 0.0, 0.0])
    assert torch.allclose(w[0, 0, 0], expect)
    w7 = boundary_weight(torch.zeros(1, 1, 9, 9))
    assert w7.abs().sum() == 0                                  # no hole, no boundary
    d = torch.ones(1, 1, 1, 7)
    assert boundary_l1(torch.zeros(1, 1, 1, 7), d, m, k=3) == pytest.approx(float(expect.mean()))


def make_algo(registry, size=16, attrs_=2, **over):
    spec = {"type": "foam.algorithm",
            "generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8, "latent_channels": 8},
            "discriminator": {"type": "foam.discriminator", "base_channels": 4, "max_channels": 8},
            "use_feature_loss": False, "first_images": 4, "grow_images": [4], "stabilise_images": 4,
            "pool_size": 4, **over}
    algo = registry.build(spec, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=size, channels=3, num_attributes=attrs_,
                       has_landmarks=True, has_mask=True))
    return algo


def batch(registry, n=2, size=16, seed=0):
    ds = registry.build({"type": "core.synthetic-faces", "image_size": size, "length": 64, "seed": seed,
                         "attributes": ["Smiling", "Male"]})
    items = [ds[i] for i in range(n)]
    out = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    out["mask"] = registry.build({"type": "core.random-rect"})(n, size, size, generator=torch.Generator().manual_seed(seed))
    return out


def test_every_g_loss_term_reaches_g(registry):
    torch.manual_seed(0)
    algo = make_algo(registry)
    algo.images = 5  # growing into 8 px
    state = algo.prepare(batch(registry), 0)
    assert state["stage"].growing
    terms = algo._g_loss(state)
    for name in ("adv", "attr_fake", "rec", "bdy"):
        algo.nets["G"].zero_grad()
        terms[name].backward(retain_graph=True)
        total = sum(p.grad.abs().sum() for p in algo.nets["G"].parameters() if p.grad is not None)
        assert total > 0, name


def test_feature_loss_reaches_g_with_random_vgg(registry):
    torch.manual_seed(0)
    spec = {"type": "foam.algorithm",
            "generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8, "latent_channels": 8},
            "discriminator": {"type": "foam.discriminator", "base_channels": 4, "max_channels": 8},
            "first_images": 4, "grow_images": [4], "stabilise_images": 4}
    algo = registry.build(spec, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=16, channels=3, num_attributes=2, has_landmarks=True,
                       has_mask=True, allow_random_weights=True))
    state = algo.prepare(batch(registry), 0)
    terms = algo._g_loss(state)
    terms["feat"].backward()
    assert sum(p.grad.abs().sum() for p in algo.nets["G"].parameters() if p.grad is not None) > 0


# --- schedule and pool -------------------------------------------------------------------------
def test_schedule_stages_and_alpha():
    args = dict(levels=3, first_images=100, grow_images=[40, 20], stabilise_images=50)
    assert schedule_at(0, **args) == schedule_at(99, **args)
    assert schedule_at(99, **args).stage == 1 and schedule_at(99, **args).alpha == 1.0
    s = schedule_at(110, **args)
    assert s.stage == 2 and s.growing and s.alpha == pytest.approx(0.25)
    assert schedule_at(140, **args).alpha == 1.0 and not schedule_at(140, **args).growing
    s = schedule_at(190 + 5, **args)
    assert s.stage == 3 and s.alpha == pytest.approx(0.25)     # second growth uses its own length 20
    assert schedule_at(10 ** 6, **args).stage == 3 and schedule_at(10 ** 6, **args).alpha == 1.0


def test_history_pool_fills_then_swaps(registry):
    torch.manual_seed(0)
    algo = make_algo(registry, pool_size=3, pool_fraction=1.0)
    a = torch.zeros(2, 3, 4, 4)
    img, _, _, _ = algo._pool_query(a, torch.zeros(2, 1, 4, 4), torch.zeros(2, 2))
    assert torch.equal(img, a) and len(algo.pool["image"]) == 2
    b = torch.ones(2, 3, 4, 4)
    img, lm, at, _ = algo._pool_query(b, torch.ones(2, 1, 4, 4), torch.ones(2, 2))
    assert len(algo.pool["image"]) == 3
    assert torch.equal(img[0], b[0])          # filled the last free slot
    assert img[1].sum() in (0, 48)            # swapped with a stored one (0) or the stored b[0] (1)
    assert lm.shape == (2, 1, 4, 4) and at.shape == (2, 2)
    algo._pool_query(torch.zeros(1, 3, 8, 8), None, None)   # a new stage's size empties the pool
    assert algo.pool_px == 8 and len(algo.pool["image"]) == 1


def test_phases_step_and_capabilities(registry):
    torch.manual_seed(0)
    algo = make_algo(registry)
    b = batch(registry)
    logs = run_step(algo, b, 0)
    assert {"D/adv", "D/attr_real", "G/adv", "G/rec", "G/bdy", "G/attr_fake"} <= set(logs)
    algo.images = 5
    res = algo.inpaint(b["image"], b["mask"], b["landmarks"], b["attributes"])
    assert res["output"].shape == b["image"].shape
    known = b["mask"] < 0.5
    assert torch.equal(res["output"].expand_as(b["image"])[known.expand_as(b["image"])],
                       b["image"][known.expand_as(b["image"])])
    assert res["filters_read"].shape == (2, 1, 16, 16)
    vis = algo.visualize(b, 2)
    assert {"input", "output", "target", "filter_read_8px", "filter_write_8px"} <= set(vis)
    assert "inpaint" in algo.capabilities()


# --- engine: checkpoint round-trip across a growth boundary, resume -----------------------------
def _run_cfg(registry, out, steps):
    from genfw.core.config import resolve_run

    raw = {"seed": 0, "device": "cpu", "out": str(out),
           "algorithm": {"type": "foam.algorithm",
                         "generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8,
                                       "latent_channels": 8},
                         "discriminator": {"type": "foam.discriminator", "base_channels": 4, "max_channels": 8},
                         "use_feature_loss": False, "first_images": 8, "grow_images": [8],
                         "stabilise_images": 4, "pool_size": 6},
           "data": {"type": "core.synthetic-faces", "image_size": 16, "length": 32},
           "mask": {"type": "core.random-rect"},
           "train": {"steps": steps, "batch_size": 4, "log_every": 1, "sample_every": 0, "checkpoint_every": 3}}
    return resolve_run(raw, registry)


def test_checkpoint_resume_across_growth_boundary(registry, tmp_path):
    from genfw.core.checkpoint import load_run
    from genfw.core.trainer import train

    cfg, resolved = _run_cfg(registry, tmp_path / "a", 3)   # 12 images: stage 2 growing (alpha 0.5)
    train(cfg, resolved, registry, progress=False)
    state = json.loads(next((tmp_path / "a" / "checkpoints").glob("0*/state.json")).read_text())
    assert json.dumps(state).count('"images": 12') >= 1
    algo, _ = load_run(str(tmp_path / "a"), "cpu", registry=registry)
    assert algo.images == 12 and algo.progress().stage == 2 and algo.progress().alpha == pytest.approx(0.5)
    assert len(algo.pool["image"]) == 4 and algo.pool_px == 8

    cfg, resolved = _run_cfg(registry, tmp_path / "a", 6)   # resume to 24 images (stage 3)
    train(cfg, resolved, registry, resume=True, progress=False)
    cfg, resolved = _run_cfg(registry, tmp_path / "b", 6)   # uninterrupted
    train(cfg, resolved, registry, progress=False)
    a, _ = load_run(str(tmp_path / "a"), "cpu", registry=registry)
    b, _ = load_run(str(tmp_path / "b"), "cpu", registry=registry)
    assert a.images == b.images == 24 and a.progress().stage == 3
    for (k, x), (_, y) in zip(a.nets["G"].state_dict().items(), b.nets["G"].state_dict().items()):
        assert torch.equal(x, y), k
    assert torch.equal(a.pool["image"], b.pool["image"])
    logs = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [round(x["resolution"]) for x in logs] == [4, 4, 8, 8, 8, 16]


@pytest.mark.parametrize("first,images,stage,growing", [(10 ** 9, 0, 1, False), (4, 16 + 5 * 10 ** 8, 3, True),
                                                        (4, 2 * 10 ** 9, 3, False)])
def test_short_run_hole_l1_decreases(registry, first, images, stage, growing):
    # 4x4 stabilising; 16 px growing at alpha ~0.5 (FOAM read/write active); 16 px after growing
    torch.manual_seed(0)
    algo = make_algo(registry, lr=2e-3, lambda_adv=0.0, lambda_attr=0.0, first_images=first,
                     grow_images=[4, 10 ** 9], stabilise_images=4)
    algo.images = images
    st = algo.progress()
    assert st.stage == stage and st.growing == growing
    b = batch(registry, n=8, size=16)
    first_l1 = [run_step(algo, b, i)["G/hole_l1"] for i in range(3)]
    for i in range(3, 50):
        last = run_step(algo, b, i)["G/hole_l1"]
    assert algo.progress().stage == stage
    assert last < 0.7 * sum(first_l1) / 3


def test_default_preset_runs_a_few_steps(registry, tmp_path):
    from genfw.core.config import deep_merge, resolve_run
    from genfw.core.trainer import train
    from genfw.plugins.foam.presets import PRESETS

    raw = deep_merge(PRESETS["default"][0], {"out": str(tmp_path / "run"), "device": "cpu",
                                             "train": {"steps": 2, "sample_every": 2, "checkpoint_every": 2}})
    cfg, resolved = resolve_run(raw, registry)
    summary = train(cfg, resolved, registry, progress=False)
    assert summary["steps"] == 2 and (tmp_path / "run" / "samples").is_dir()


def test_unconditioned_variant_without_landmarks_or_attributes(registry):
    torch.manual_seed(0)
    algo = make_algo(registry, attrs_=0, use_landmarks=False, landmarks={"type": "foam.dots"})
    b = batch(registry)
    del b["landmarks"], b["attributes"]
    algo.images = 5
    logs = run_step(algo, b, 0)
    assert "G/attr_fake" not in logs and "D/attr_real" not in logs
    assert algo.inpaint(b["image"], b["mask"])["output"].shape == b["image"].shape


def test_needs_mask_and_landmarks(registry):
    from genfw import ConfigError

    algo = registry.build({"type": "foam.algorithm", "use_feature_loss": False}, kind="algorithm")
    with pytest.raises(ConfigError, match="mask"):
        algo.setup(Context(registry=registry, image_size=16, has_landmarks=True))
    with pytest.raises(ConfigError, match="landmarks"):
        algo.setup(Context(registry=registry, image_size=16, has_mask=True))
