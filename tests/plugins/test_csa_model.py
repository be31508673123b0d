"""CSA networks, losses and algorithm: gradients of every term, a short run, inpaint, presets."""
import pytest
import torch

from genfw import ConfigError, Context
from genfw.core.config import build_run_config
from genfw.core.step import run_step
from genfw.plugins.csa.algorithm import LinearDecay
from genfw.plugins.csa.losses import consistency_loss, reconstruction_loss
from genfw.registry import get_registry

TINY = {"base_channels": 4, "max_channels": 8}


def _algo(size=32, lambda_c=0.0, feature_d=False, lr=2e-4, refine=None, **extra):
    reg = get_registry()
    spec = {
        "type": "csa.algorithm",
        "rough": {"type": "csa.rough", **TINY},
        "refine": {"type": "csa.refine", **TINY, "consistency_channels": 512 if lambda_c else 0,
                   "csa_level": 2, **(refine or {})},
        "patch_discriminator": {"type": "csa.patch-discriminator", "base_channels": 4},
        "feature_discriminator": {"type": "csa.feature-discriminator", "widths": [8, 8, 8]},
        "use_feature_discriminator": feature_d, "lambda_consistency": lambda_c, "lr": lr, **extra,
    }
    algo = reg.build(spec, kind="algorithm")
    algo.setup(Context(registry=reg, image_size=size, has_mask=True, batch_size=2, total_steps=100,
                       allow_random_weights=True))
    return algo


def _batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    phase = torch.rand(n, 3, 1, 1, generator=g)
    image = (0.5 + 0.4 * torch.sin(6 * xx + 4 * yy + 6 * phase)).clamp(0, 1)
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    if n > 1:
        mask[1] = 0
        mask[1, :, : size // 2, size // 3: size // 3 + size // 4] = 1  # a different hole per sample
    return {"image": image, "mask": mask}


def test_reconstruction_and_consistency_losses_by_hand():
    a, b, t = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert reconstruction_loss(a, b, t) == pytest.approx(1.0)
    csa = torch.zeros(1, 2, 2, 2)
    mirror = torch.ones(1, 2, 2, 2)
    target = torch.full((1, 2, 2, 2), 2.0)
    hole = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # one hole position, 2 channels: ((0-2)^2 + (1-2)^2) per channel, averaged over 2 channels
    assert consistency_loss(csa, mirror, target, hole) == pytest.approx(5.0)
    assert consistency_loss(csa, mirror, target, torch.zeros_like(hole)) == 0


def test_every_generator_loss_term_reaches_the_generators():
    algo = _algo(size=64, lambda_c=0.01, feature_d=True, refine={"csa_level": 3})
    state = algo.prepare(_batch(size=64), 0)
    terms = algo._g_loss(state)
    assert {"rec", "consistency", "adv_patch", "adv_feature"} <= set(terms)
    rough, refine = list(algo.nets["rough"].parameters()), list(algo.nets["refine"].parameters())
    for name in ("rec", "consistency", "adv_patch", "adv_feature"):
        grads = torch.autograd.grad(terms[name], rough + refine, retain_graph=True, allow_unused=True)
        for net, part in (("rough", grads[:len(rough)]), ("refine", grads[len(rough):])):
            norm = sum(float(g.norm()) for g in part if g is not None)
            assert norm > 0, f"{name} sends no gradient to {net}"


def test_discriminator_phase_trains_both_discriminators():
    algo = _algo(size=64, lambda_c=0.0, feature_d=True, refine={"csa_level": 3})
    assert "feature_d" in algo.nets
    # the frozen VGG is neither a trainable parameter nor saved with the discriminator
    assert all(not k.startswith("_vgg") for k in algo.nets["feature_d"].state_dict())
    before = {n: [p.clone() for p in algo.nets[n].parameters()] for n in ("patch_d", "feature_d")}
    logs = run_step(algo, _batch(size=64), 0)
    assert {"D/patch", "D/feature", "G/adv_feature"} <= set(logs)
    for n, old in before.items():
        assert any(not torch.equal(a, b) for a, b in zip(old, algo.nets[n].parameters())), n


def test_short_run_hole_l1_decreases():
    torch.manual_seed(0)
    algo = _algo(size=32, lr=2e-3, lambda_adv=0.002)
    batches = [_batch(seed=s) for s in range(4)]
    hole = [run_step(algo, batches[i % 4], i)["G/hole_l1"] for i in range(40)]
    first, last = sum(hole[:4]) / 4, sum(hole[-4:]) / 4
    assert last < 0.7 * first, (first, last)


def test_inpaint_keeps_known_region_and_gives_attention():
    algo = _algo(size=32)
    b = _batch()
    res = algo.inpaint(b["image"], b["mask"], attention_at=(16, 16))
    known = b["mask"].expand_as(b["image"]) < 0.5
    assert torch.equal(res["output"][known], b["image"][known])
    assert res["coarse"].shape == b["image"].shape
    att = res["attention"]
    assert att.shape == (2, 32, 32)
    # CSA level 2 at 32 px is 8x8: each feature cell covers 4x4 pixels, the row sums to 1
    assert torch.allclose(att.sum((1, 2)), torch.full((2,), 16.0), atol=1e-4)
    vis = algo.visualize(b, 2)
    assert set(vis) == {"input", "coarse", "output", "target"}


def test_algorithm_needs_masks():
    reg = get_registry()
    algo = reg.build({"type": "csa.algorithm", "use_feature_discriminator": False, "lambda_consistency": 0.0},
                     kind="algorithm")
    with pytest.raises(ConfigError, match="mask"):
        algo.setup(Context(registry=reg, image_size=32, has_mask=False))


def test_consistency_needs_512_channels():
    with pytest.raises(ConfigError, match="512"):
        _algo(size=64, lambda_c=0.01, refine={"consistency_channels": 0, "csa_level": 3})


def test_presets_resolve():
    reg = get_registry()
    names = ["default", "default-irregular", "paper-256", "paper-256-irregular", "ref-256", "ref-256-irregular"]
    for name in names:
        cfg, resolved = build_run_config(reg, plugin="csa", preset=name)
        assert cfg.mask and cfg.algorithm["type"] == "csa.algorithm"
    paper = build_run_config(reg, plugin="csa", preset="paper-256")[1]["algorithm"]
    assert (paper["lambda_rec"], paper["lambda_consistency"], paper["lambda_adv"]) == (1.0, 0.01, 0.002)
    ref = build_run_config(reg, plugin="csa", preset="ref-256")[1]["algorithm"]
    assert (ref["lambda_rec"], ref["lambda_consistency"], ref["lambda_adv"]) == (100.0, 1.0, 0.2)
    assert ref["lr_decay_start"] == pytest.approx(1 / 6)


def test_linear_decay_schedule():
    f = LinearDecay(20, 120)
    assert f(0) == 1.0 and f(19) == 1.0 and f(20) == 1.0
    assert f(70) == pytest.approx(0.5) and f(120) == 0.0


def test_step_runs_vgg_once_per_image_with_the_old_steps_losses():
    from genfw.plugins.csa.discriminators import vgg_output

    torch.manual_seed(0)
    algo = _algo(size=64, lambda_c=0.5, feature_d=True)  # the feature D needs pool3 of at least 8x8
    fd = algo.nets["feature_d"]
    calls = []
    hooks = [m.register_forward_hook(lambda *a, name=name: calls.append(name))
             for name, m in (("algo", algo.vgg), ("feature_d", fd.vgg))]
    batch = _batch(size=64)
    s = algo.prepare(batch, 0)
    assert sorted(calls) == ["algo", "feature_d"]  # the real image once (shared VGG), the refined image once
    new_d, new_g = algo._d_loss(s), algo._g_loss(s)
    for h in hooks:
        h.remove()
    # the step before this change: the feature discriminator ran its VGG on every call
    x, refined = s["x"], s["refined"]
    old_d = algo.gan.d(fd(x), fd(refined.detach()))
    old_g = algo.gan.g(fd(refined), fd(x))
    torch.testing.assert_close(new_d["feature"], old_d, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_g["adv_feature"], old_g, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s["target_features"], vgg_output(algo.vgg(batch["image"]), "relu4_3"))
    # and the generator's adversarial gradient is the old one
    g_new, = torch.autograd.grad(new_g["adv_feature"], refined, retain_graph=True)
    g_old, = torch.autograd.grad(old_g, refined)
    torch.testing.assert_close(g_new, g_old, rtol=1e-4, atol=1e-7)
