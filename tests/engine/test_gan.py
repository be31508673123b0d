import pytest
import torch

from genfw.core.algorithm import Context
from genfw.core.gan import DCGANDiscriminator, DCGANDiscriminatorConfig, DCGANGenerator, DCGANGeneratorConfig
from genfw.core.step import run_step


@pytest.mark.parametrize("size", [4, 8, 16])
def test_dcgan_shapes(size):
    g = DCGANGenerator(DCGANGeneratorConfig(image_size=size, channels=2, latent_dim=5, base_channels=4, max_channels=16))
    d = DCGANDiscriminator(DCGANDiscriminatorConfig(image_size=size, channels=2, base_channels=4, max_channels=16))
    x = g(torch.randn(3, 5), from_prior=False)
    assert g.latent_dim == 5 and x.shape == (3, 2, size, size)
    assert x.abs().max() <= 1
    assert d(x).shape == (3, 1)


def test_bad_size_is_config_error(registry):
    from genfw import ConfigError

    with pytest.raises(ConfigError, match="4 \\* 2\\^k"):
        registry.build({"type": "core.dcgan-generator", "image_size": 12}, kind="generator")


def _algo(registry, loss="core.bce", **kw):
    import engine_toy

    algo = registry.build({"type": "core.gan", **engine_toy.TINY_NETS, "loss": {"type": loss}, **kw},
                          kind="algorithm")
    algo.setup(Context(registry=registry, image_size=8, channels=1))
    return algo


def test_phases_update_only_their_network(registry):
    torch.manual_seed(0)
    algo = _algo(registry)
    g0 = {k: v.clone() for k, v in algo.nets["G"].state_dict().items()}
    batch = {"image": torch.rand(4, 1, 8, 8)}
    # only the D phase: G must not move
    state = algo.prepare(batch, 0)
    phases = algo.phases(0)
    assert [p.name for p in phases] == ["D", "G"] and phases[0].updates == ("D",)
    logs = run_step(algo, batch, 0)
    assert {"D/loss", "G/loss", "D/real_score", "D/fake_score"} <= set(logs)
    assert any(not torch.equal(g0[k], v) for k, v in algo.nets["G"].state_dict().items())
    del state


def test_d_loss_matches_hand_formula(registry):
    torch.manual_seed(1)
    algo = _algo(registry)
    state = algo.prepare({"image": torch.rand(4, 1, 8, 8)}, 0)
    out = algo.d_loss(state)
    d = algo.nets["D"]
    r, f = d(state["real"]), d(state["fake"].detach())
    expect = -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean()
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-5)
    # real images are mapped to the generator's [-1, 1] range
    assert state["real"].min() >= -1 and state["real"].max() <= 1


def test_relativistic_loss_gets_real_scores(registry):
    algo = _algo(registry, loss="core.ralsgan")
    batch = {"image": torch.rand(4, 1, 8, 8)}
    logs = run_step(algo, batch, 0)
    assert torch.isfinite(torch.tensor(logs["G/loss"]))


def test_short_training_moves_losses_and_samples_in_unit_range(registry):
    torch.manual_seed(0)
    algo = _algo(registry, lr_d=1e-3, lr_g=1e-3)
    data = torch.rand(4, 1, 8, 8) * 0.2 + 0.8  # bright images: D learns them fast
    first = run_step(algo, {"image": data}, 0)
    for s in range(1, 15):
        last = run_step(algo, {"image": data}, s)
    assert last["D/real_score"] > first["D/real_score"]
    x = algo.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    y = algo.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_rmsprop_and_schedule(registry):
    algo = _algo(registry, optimizer="rmsprop", lr_schedule={"type": "core.step", "every": 1, "gamma": 0.5})
    assert isinstance(algo.optimizers["G"], torch.optim.RMSprop)
    run_step(algo, {"image": torch.rand(2, 1, 8, 8)}, 0)
    assert algo.optimizers["D"].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_sample_passes_options_to_generator(registry):
    algo = _algo(registry)
    seen = {}
    forward = algo.nets["G"].forward

    def spy(z, from_prior=True, **kw):
        seen.update(kw, from_prior=from_prior)
        return forward(z, from_prior=from_prior, **kw)

    algo.nets["G"].forward = spy
    algo.sample(2, lis_steps=1)
    assert seen == {"lis_steps": 1, "from_prior": True}
