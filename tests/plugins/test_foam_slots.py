"""FOAM in the slot machinery: the foam.filter attention layer, attention slots at named levels of the
FOAM generator (the CSA layer inside FOAM), and unconditioned discriminators behind FOAM."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from genfw import ConfigError, Context
from genfw.core.step import run_step
from genfw.plugins.foam.filter_layer import FilterConfig, FOAMFilter
from genfw.plugins.foam.networks import FOAMGenerator, GeneratorConfig
from genfw.registry import get_registry


@pytest.fixture(scope="module")
def registry():
    return get_registry()


def constant_filters(layer: FOAMFilter, read: float, write: float) -> None:
    """Make both ToFilter heads output a constant (zero weights into the last 1x1 conv, logit bias)."""
    with torch.no_grad():
        for head, value in ((layer.read, read), (layer.write, write)):
            head[2].weight.zero_()
            head[2].bias.fill_(float(torch.logit(torch.tensor(value))))


# --- foam.filter -----------------------------------------------------------------------------------
@torch.no_grad()
def test_filter_layer_by_hand():
    layer = FOAMFilter(FilterConfig(channels=1))
    constant_filters(layer, read=0.25, write=0.6)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    out, att = layer(x, mask, return_attention=True)
    # read: the coarse cell averages the known features weighted by (1 - F_read) (1 - M): (2 + 3 + 4) / 3
    coarse = 3.0
    assert out[0, 0, 0, 0] == pytest.approx(0.6 * 1.0 + 0.4 * coarse)     # write: fine vs coarse in the hole
    assert torch.equal(out[0, 0].flatten()[1:], x[0, 0].flatten()[1:])       # known features pass unchanged
    assert att.shape == (1, 2, 2, 2) and torch.allclose(att[:, 0], torch.full((1, 2, 2), 0.25))
    # eq. 7-8 through the `alpha` context key: alpha 0 -> coarse only, alpha 1 -> fine only
    assert layer(x, mask, alpha=0.0)[0, 0, 0, 0] == pytest.approx(coarse)
    assert layer(x, mask, alpha=1.0, unused_key=3)[0, 0, 0, 0] == pytest.approx(1.0)
    # a coarse cell with no known context falls back to the plain mean of its features
    full = torch.ones(1, 1, 2, 2)
    assert layer(x, full)[0, 0, 0, 0] == pytest.approx(0.6 * 1.0 + 0.4 * 2.5)


def test_filter_layer_is_a_feature_attention_with_a_channels_hint(registry):
    from genfw.core.roles import build_slot

    entry = registry.get("foam.filter", "layer")
    assert "feature-attention" in entry.roles
    layer = build_slot(registry, {"type": "foam.filter"}, role="feature-attention", path="x.attention",
                       hints={"channels": 6})
    assert layer.cfg.channels == 6
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    m = torch.zeros(2, 1, 5, 5)
    m[:, :, 1:3, 2:5] = 1
    out = layer(x, m)
    out.square().sum().backward()
    assert layer.write[0].conv.weight.grad.abs().sum() > 0 and layer.read[0].conv.weight.grad.abs().sum() > 0
    assert torch.equal(out.detach()[(m == 0).expand_as(x)], x.detach()[(m == 0).expand_as(x)])


# --- attention slots in the FOAM generator ---------------------------------------------------------------
def tiny_g(**attention) -> FOAMGenerator:
    return FOAMGenerator(GeneratorConfig(image_size=16, base_channels=4, max_channels=8, latent_channels=8,
                                         attention=attention))


def _capture(layer):
    seen = {}

    def hook(mod, args, out):
        seen["in"], seen["mask"], seen["out"] = args[0].detach(), args[1].detach(), out.detach()
    layer.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("kind", ["csa.layer", "foam.filter"])
def test_attention_layer_inside_foam_changes_only_hole_features(kind):
    torch.manual_seed(0)
    g = tiny_g(**{"8": {"type": kind}})
    assert list(g.attention) == ["8"]
    seen = _capture(g.attention["8"])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 3:11, 4:12] = 1
    out = g(x, m, torch.rand(2, 1, 16, 16), stage=3, alpha=1.0)["output"]
    assert out.shape == (2, 3, 16, 16)
    feats, lm, res = seen["in"], seen["mask"], seen["out"]
    assert feats.shape == (2, 8, 8, 8) and lm.shape == (2, 1, 8, 8)        # level 8: width w(8) = 8
    assert torch.allclose(lm, torch.nn.functional.avg_pool2d(m, 2))        # the hole mask at that level
    hole = lm > 0.5 if kind == "csa.layer" else lm > 0                      # CSA: holes are mask > 0.5
    known = (~hole).expand_as(feats)
    assert torch.equal(res[known], feats[known])                           # known positions unchanged
    assert not torch.allclose(res[hole.expand_as(feats)], feats[hole.expand_as(feats)])


def test_attention_slot_errors_are_one_line():
    with pytest.raises(ConfigError, match="level '12' must be a feature resolution"):
        tiny_g(**{"12": {"type": "csa.layer"}})
    with pytest.raises(ConfigError) as exc:
        tiny_g(**{"8": {"type": "foam.sketch"}})
    assert "attention.8" in str(exc.value) and "\n" not in str(exc.value)


# --- the discriminator slot --------------------------------------------------------------------------
def algo_with(registry, d_spec, size=32, **over):
    spec = {"type": "foam.algorithm",
            "generator": {"type": "foam.generator", "base_channels": 4, "max_channels": 8, "latent_channels": 8},
            "discriminator": d_spec, "use_feature_loss": False, "first_images": 4, "grow_images": [1000],
            "stabilise_images": 4, "pool_size": 4, **over}
    algo = registry.build(spec, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=size, channels=3, num_attributes=2,
                       has_landmarks=True, has_mask=True, allow_random_weights=True))
    return algo


def batch(registry, n=2, size=32):
    ds = registry.build({"type": "core.synthetic-faces", "image_size": size, "length": 8,
                         "attributes": ["Smiling", "Male"]})
    items = [ds[i] for i in range(n)]
    out = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    out["mask"] = registry.build({"type": "core.random-rect"})(n, size, size, generator=torch.Generator().manual_seed(0))
    return out


UNCONDITIONED = [{"type": "csa.patch-discriminator", "base_channels": 4},
                 {"type": "core.dcgan-discriminator", "base_channels": 4, "max_channels": 8},
                 {"type": "csa.feature-discriminator", "widths": [8, 8], "allow_random_weights": True}]


@pytest.mark.parametrize("d_spec", UNCONDITIONED, ids=lambda s: s["type"])
def test_unconditioned_discriminator_needs_the_explicit_option(registry, d_spec):
    with pytest.raises(ConfigError) as exc:
        algo_with(registry, d_spec)
    msg = str(exc.value)
    assert msg.startswith("algorithm.discriminator") and d_spec["type"] in msg
    assert 'discriminator_conditioning = "none"' in msg and "\n" not in msg


@pytest.mark.parametrize("d_spec", UNCONDITIONED, ids=lambda s: s["type"])
def test_unconditioned_discriminator_trains_behind_foam(registry, d_spec):
    torch.manual_seed(0)
    algo = algo_with(registry, d_spec, discriminator_conditioning="none")
    b = batch(registry)
    algo.images = 4 + 500          # growing into 8 px: D judges the 8 px images up-sampled to 32 px
    logs = run_step(algo, b, 0)
    assert {"D/adv", "G/adv", "G/rec"} <= set(logs)
    assert "D/attr_real" not in logs and "G/attr_fake" not in logs    # no attribute head, no attribute loss
    assert all(torch.isfinite(torch.tensor(float(v))) for v in logs.values())


def test_wrong_mix_on_the_command_line_is_one_line(tmp_path):
    from genfw.cli import cli

    cfg = tmp_path / "mix.toml"
    cfg.write_text('[algorithm.discriminator]\ntype = "csa.patch-discriminator"\n')
    res = CliRunner().invoke(cli, ["run", "--plugin", "foam", "--config", str(cfg), "--out", str(tmp_path / "r"),
                                   "--device", "cpu", "--no-progress", "--set", "data.length=4", "--steps", "1"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert not (tmp_path / "r" / "checkpoints").exists()
    assert res.output.strip().count("\n") == 0 and "discriminator_conditioning" in res.output


def test_single_attention_table_goes_to_attention_level():
    g = FOAMGenerator(GeneratorConfig(image_size=16, base_channels=4, max_channels=8, latent_channels=8,
                                      attention={"type": "foam.filter"}, attention_level=8))
    assert list(g.attention) == ["8"] and g.attention["8"].cfg.channels == 8
    g = FOAMGenerator(GeneratorConfig(image_size=16, base_channels=4, max_channels=8, latent_channels=8,
                                      attention={"type": "csa.layer"}))
    assert list(g.attention) == ["16"]                    # 32 px, or the top level when smaller


def test_foam_slots_offer_only_what_runs_without_extra_options(registry):
    from genfw.core.roles import slot_table

    rows = {r["slot"]: r["fits"] for r in slot_table(registry) if r["owner"] == "foam.algorithm"}
    assert rows["generator"] == ["foam.generator"]        # csa.rough takes no stage / alpha
    assert rows["discriminator"] == ["foam.discriminator"]
    assert {"csa.layer", "foam.filter"} <= set(
        next(r["fits"] for r in slot_table(registry) if r["owner"] == "foam.generator" and r["slot"] == "attention"))
    with pytest.raises(ConfigError, match=r"algorithm.generator \(csa.rough\).*stage"):
        algo_with(registry, {"type": "foam.discriminator"}, generator={"type": "csa.rough"})
