"""Roles and slots: every registered component declares its role, every (slot, fitting component)
pair builds and steps, non-fitting pairs are one-line errors, and the mixes keep their contracts."""
import subprocess
import sys

import pytest
import torch

from genfw.core.errors import ConfigError
from genfw.core.roles import ROLES, build_slot, fits, slot_table
from genfw.registry import get_registry
from genfw.testing.slots import run_pair, slot_pairs

REG = get_registry()
PAIRS = slot_pairs(REG)


@pytest.mark.parametrize("entry", [e for e in REG.entries() if e.kind in
                                   ("generator", "discriminator", "encoder", "algorithm")], ids=lambda e: e.name)
def test_every_network_and_algorithm_declares_a_known_role(entry):
    assert entry.roles, f"{entry.name} declares no role"
    assert set(entry.roles) <= set(ROLES)
    for role in entry.roles:
        assert ROLES[role].kind == entry.kind


def test_every_slot_has_at_least_one_fitting_component():
    for row in slot_table(REG):
        assert row["fits"], f"nothing fits {row['owner']}.{row['slot']}"


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.id)
def test_every_fitting_pair_builds_and_runs_one_step(pair):
    logs = run_pair(REG, pair)
    assert logs, pair.id


def test_pairs_cover_the_paper_modules():
    ids = {p.id for p in PAIRS}
    assert "csa.refine.attention=csa.layer" in ids
    assert "csa.refine.attention=core.identity-attention" in ids
    assert "introvae.algorithm.encoder=core.dcgan-encoder" in ids
    assert {p.component for p in PAIRS if p.role == "latent-generator"} >= {"lis.generator", "core.dcgan-generator"}


# --- what does not fit --------------------------------------------------------------------------------
def genfw(*args):
    return subprocess.run([sys.executable, "-m", "genfw", *args], capture_output=True, text=True)


MISFITS = [
    # (id, args, words the one line must contain)
    ("latent generator as CSA's rough net",
     ["--plugin", "csa", "--set", 'algorithm.rough={type = "example.mlp-generator"}'],
     ["algorithm.rough (example.mlp-generator)", "not masked-generator", "csa.rough"]),
    ("logit D under BCE on probabilities (lis.glis)",
     ["--plugin", "lis", "--set", "data.image_size=32",
      "--set", 'algorithm.discriminator={type = "core.dcgan-discriminator"}'],
     ["algorithm.discriminator (core.dcgan-discriminator)", "output is 'logits'", "'probabilities'",
      "core.probabilities"]),
    ("probability D under BCE on logits (core.gan)",
     ["--config", "examples/mixing/lis-gan-vs-patchgan.toml",
      "--set", 'algorithm.discriminator={type = "lis.dcgan-discriminator"}'],
     ["algorithm.discriminator (lis.dcgan-discriminator)", "output is 'probabilities'", "needs 'logits'"]),
    ("tanh generator where [0, 1] is expected (lis.glis)",
     ["--plugin", "lis", "--set", "data.image_size=32",
      "--set", 'algorithm.generator={type = "core.dcgan-generator", latent_dim = 64}'],
     ["algorithm.generator (core.dcgan-generator)", "output_range is 'signed'", "needs 'unit'", "core.range"]),
    ("3-channel generator on grey data",
     ["--config", "examples/mixing/introvae-decoder-as-gan.toml",
      "--set", 'algorithm.generator={type = "core.dcgan-generator", channels = 3}'],
     ["algorithm.generator (core.dcgan-generator)", "makes 3 x 32 x 32 images", "data is 1 x 32 x 32"]),
    ("attention layer as a generator",
     ["--plugin", "introvae", "--set", 'algorithm.decoder={type = "csa.layer"}'],
     ["algorithm.decoder (csa.layer)", "feature-attention", "not a latent-generator", "introvae.decoder"]),
    ("latent transform as CSA attention",
     ["--plugin", "csa", "--set", 'algorithm.refine.attention={type = "lis.module"}'],
     ["algorithm.refine.attention (lis.module)", "latent-transform", "not feature-attention", "csa.layer"]),
    ("encoder of another latent size",
     ["--plugin", "introvae", "--set", 'algorithm.encoder={type = "core.dcgan-encoder", z_dim = 7}'],
     ["algorithm.encoder (core.dcgan-encoder)", "z_dim 7"]),
    ("unconditioned discriminator behind FOAM without saying so",
     ["--plugin", "foam", "--set", 'algorithm.discriminator={type = "csa.patch-discriminator"}'],
     ["algorithm.discriminator (csa.patch-discriminator)", "passes alpha, landmarks, stage",
      'discriminator_conditioning = "none"', "foam.discriminator"]),
    ("discriminator as the GAN loss",
     ["--config", "examples/mixing/lis-gan-vs-patchgan.toml", "--set", 'algorithm.loss={type = "csa.patch-discriminator"}'],
     ["algorithm.loss (csa.patch-discriminator)", "not a gan-loss", "core.hinge"]),
]


@pytest.mark.parametrize("case", MISFITS, ids=lambda c: c[0])
def test_a_non_fitting_pair_is_one_line_and_writes_nothing(case, tmp_path):
    _, args, needles = case
    out = tmp_path / "run"
    res = genfw("run", *args, "--set", "train.steps=1", "--set", "device=cpu", "--out", str(out), "--no-progress")
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("warning:") and "csa:" not in ln]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists() or not any(out.rglob("*.safetensors")), "a failed build wrote a checkpoint"


def test_fits_lists_only_what_the_slot_can_take():
    assert "lis.dcgan-discriminator" not in fits(REG, "image-discriminator", need={"output": "logits"})
    assert "core.dcgan-discriminator" in fits(REG, "image-discriminator", need={"output": "logits"})
    assert fits(REG, "refinement-generator") == ["csa.refine"]


# --- the mixes keep their numerical contracts -----------------------------------------------------------
def _refine(attention, seed=0):
    torch.manual_seed(seed)
    return REG.build({"type": "csa.refine", "image_size": 32, "base_channels": 4, "max_channels": 8, "csa_level": 2,
                      "consistency_channels": 0, "attention": attention})


def test_refine_with_identity_attention_is_the_network_without_the_layer():
    net = _refine({"type": "core.identity-attention"})
    x, mask = torch.rand(2, 6, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    # the same weights, run by hand without any attention step
    skips = [net.stem(x)]
    h = skips[0]
    for block in net.down:
        h = block(h)
        skips.append(h)
    for i in range(net.depth - 1, -1, -1):
        h = net.up[i](h if i + 1 == net.depth else torch.cat([h, skips[i + 1]], 1))
    by_hand = net.head(torch.cat([h, skips[0]], 1))
    torch.testing.assert_close(net(x, mask), by_hand, rtol=0, atol=0)


def test_refine_attention_slot_changes_only_hole_features_at_its_level():
    layer = REG.build({"type": "csa.layer"})
    seen = {}

    def hook(module, inputs, output):
        seen["in"], seen["mask"], seen["out"] = inputs[0], inputs[1], output

    net = _refine({"type": "csa.layer"})
    net.csa.register_forward_hook(hook)
    x, mask = torch.rand(2, 6, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    net(x, mask)
    known = seen["mask"].expand_as(seen["in"]) < 0.5
    assert seen["in"].shape[-1] == 8  # csa_level 2 of 32 px
    torch.testing.assert_close(seen["out"][known], seen["in"][known], rtol=0, atol=0)
    assert not torch.allclose(seen["out"][~known], seen["in"][~known])
    torch.testing.assert_close(seen["out"], layer(seen["in"], seen["mask"]))


def test_foam_filter_in_refine_changes_only_hole_features_at_its_level():
    seen = {}
    net = _refine({"type": "foam.filter"})
    net.csa.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0], m=inputs[1], y=out))
    x, mask = torch.rand(2, 6, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    net(x, mask).sum().backward()
    assert net.csa.cfg.channels == seen["x"].shape[1] == 8  # the level's width reached the layer as a hint
    known = seen["m"].expand_as(seen["x"]) == 0
    torch.testing.assert_close(seen["y"][known], seen["x"][known], rtol=0, atol=0)
    assert not torch.allclose(seen["y"][~known], seen["x"][~known])
    assert all(p.grad is not None for p in net.csa.parameters())  # the filter heads train inside CSA's net


def test_a_latent_transform_slot_puts_lis_in_front_of_prior_noise_only():
    gen = build_slot(REG, {"type": "core.dcgan-generator", "image_size": 8, "latent_dim": 6, "base_channels": 4,
                           "latent_transform": {"type": "lis.module", "k": 2}}, role="latent-generator", path="g")
    gen.eval()
    z = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(gen(z, from_prior=True), gen.generator(gen.transform(z)))
        torch.testing.assert_close(gen(z, from_prior=False), gen.generator(z))
        assert not torch.allclose(gen(z, from_prior=True), gen(z, from_prior=False))
    with pytest.raises(ConfigError, match=r"g.latent_transform \(lis.module\): latent_dim is 5 but this slot needs 6"):
        build_slot(REG, {"type": "core.dcgan-generator", "image_size": 8, "latent_dim": 6, "base_channels": 4,
                         "latent_transform": {"type": "lis.module", "latent_dim": 5}}, role="latent-generator", path="g")


def test_range_and_probability_adapters_are_exact():
    torch.manual_seed(0)
    g = REG.build({"type": "core.range", "to": "unit", "generator": {"type": "core.dcgan-generator", "image_size": 8,
                                                                      "latent_dim": 4, "base_channels": 4}})
    g.eval()
    z = torch.randn(5, 4)
    with torch.no_grad():
        inner, out = g.generator(z), g(z)
    torch.testing.assert_close(out, (inner + 1) / 2)
    assert float(inner.min()) < 0 and 0 <= float(out.min()) and float(out.max()) <= 1
    d = REG.build({"type": "core.probabilities", "discriminator": {"type": "core.dcgan-discriminator", "image_size": 8,
                                                                    "base_channels": 4}})
    x = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(d(x), torch.sigmoid(d.discriminator(x)))
    assert d.output == "probabilities"


def test_dcgan_encoder_shapes_and_gradients():
    enc = REG.build({"type": "core.dcgan-encoder", "image_size": 16, "in_channels": 1, "z_dim": 5, "base_channels": 4})
    mu, logvar = enc(torch.rand(3, 1, 16, 16))
    assert mu.shape == logvar.shape == (3, 5)
    (mu.sum() + logvar.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_constructor_errors_in_a_slot_name_the_slot_and_component():
    with pytest.raises(ConfigError, match=r"^algorithm\.refine \(csa\.refine\): csa_level must be in"):
        build_slot(REG, {"type": "csa.refine", "image_size": 32, "csa_level": 7}, role="refinement-generator",
                   path="algorithm.refine")


def test_docs_compatibility_table_is_the_registry():
    import re
    from pathlib import Path

    from genfw.cli.slots_view import markdown_table

    text = (Path(__file__).resolve().parents[1] / "docs" / "mixing.md").read_text()
    table = re.search(r"<!-- slots-table -->\n(.*?)\n<!-- /slots-table -->", text, re.S).group(1)
    assert table == markdown_table(REG), "docs/mixing.md's slot table is stale: regenerate it from genfw.cli.slots_view"


def test_components_slots_cli_lists_roles_and_fits():
    res = genfw("components", "--slots")
    assert res.returncode == 0, res.stderr
    assert "csa.refine.attention  [feature-attention]" in res.stdout
    import json

    data = json.loads(genfw("components", "--slots", "--json").stdout)
    rows = {(r["owner"], r["slot"]): r for r in data["slots"]}
    assert "csa.layer" in rows[("csa.refine", "attention")]["fits"]
    assert "latent-transform" in data["roles"]
