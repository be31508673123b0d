"""IntroVAE plugin: loss equations, phase isolation, exact gradients, short training runs."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from genfw import ConfigError, Context
from genfw.core.step import run_step
from genfw.plugins.introvae.losses import IntroVAELoss, IntroVAELossConfig
from genfw.plugins.introvae.networks import Decoder, Encoder, NetConfig, paper_channels
from genfw.registry import load_plugins


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def faces(size: int, n: int | None = None) -> torch.Tensor:
    from skimage.data import lfw_subset

    x = torch.tensor(lfw_subset()[:100], dtype=torch.float32)[:, None]  # the 100 faces
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return x if n is None else x[:n]


def make_algo(registry, size=16, channels=(4, 8), z=8, in_ch=1, **over):
    net = {"channels": list(channels), "z_dim": z}
    spec = {"type": "introvae.algorithm", "encoder": {"type": "introvae.encoder", **net},
            "decoder": {"type": "introvae.decoder", **net}, **over}
    algo = registry.build(spec, kind="algorithm")
    algo.setup(Context(registry=registry, image_size=size, channels=in_ch))
    return algo


def loss(**kw) -> IntroVAELoss:
    return IntroVAELoss(IntroVAELossConfig(**kw))


# --- losses on hand-computed tensors ------------------------------------------------------------
def test_kl_per_sample_sum_batch_mean():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # sample 0: -0.5 * ((1 + 0 - 1 - 1) + (1 + ln2 - 0 - 2)) = 1 - ln2 / 2; sample 1: -0.5 * (0 - 4) = 2
    per = IntroVAELoss.kl_per_sample(mu, logvar)
    assert torch.allclose(per, torch.tensor([1 - math.log(2) / 2, 2.0]))
    assert loss().kl(mu, logvar).item() == pytest.approx((3 - math.log(2) / 2) / 2)
    assert loss().kl(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0


def test_l_ae_scale_paper_and_reference():
    x = torch.zeros(2, 1, 2, 2)
    x_r = torch.zeros(2, 1, 2, 2)
    x_r[0] = 1.0            # squared error 4
    x_r[1, 0, 0, 0] = 2.0   # squared error 4
    x_r[1, 0, 1, 1] = 1.0   # + 1 -> 5
    assert loss(ae_scale=1.0).ae(x, x_r).item() == pytest.approx(4.5)
    assert loss().ae(x, x_r).item() == pytest.approx(2.25)  # paper's 1/2 is the default


def test_hinge_inactive_when_kl_reaches_margin():
    mu = torch.tensor([[3.0, 0.0], [1.0, 0.0]], requires_grad=True)  # KLs 4.5 and 0.5
    logvar = torch.zeros(2, 2, requires_grad=True)
    h, kl = loss(margin=2.5).hinge(mu, logvar)  # batch mean 2.5 >= m
    assert kl.item() == pytest.approx(2.5) and h.item() == 0.0
    h.backward()
    assert mu.grad.abs().sum() == 0 and logvar.grad.abs().sum() == 0
    h, _ = loss(margin=2.0).hinge(mu.detach(), logvar.detach())
    assert h.item() == 0.0
    # below the margin: [m - mean KL]^+ ; per sample: mean of [m - KL_i]^+
    assert loss(margin=3.0).hinge(mu, logvar)[0].item() == pytest.approx(0.5)
    assert loss(margin=3.0, hinge="sample").hinge(mu, logvar)[0].item() == pytest.approx(1.25)
    assert loss(margin=2.5, hinge="sample").hinge(mu, logvar)[0].item() == pytest.approx(1.0)


def test_encoder_and_decoder_losses_combine_terms():
    lf = loss(margin=10.0, alpha_e=0.5, alpha_g=0.25, beta=2.0)
    real = (torch.zeros(2, 2), torch.zeros(2, 2))                              # KL 0
    rec = (torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.zeros(2, 2))          # KL 2
    fake = (torch.tensor([[4.0, 0.0], [4.0, 0.0]]), torch.zeros(2, 2))         # KL 8
    l_ae = torch.tensor(3.0)
    e = lf.encoder_loss(real, rec, fake, l_ae)
    assert e["loss"].item() == pytest.approx(0 + 0.5 * ((10 - 2) + (10 - 8)) + 2.0 * 3.0)
    assert (e["kl_real"].item(), e["kl_rec"].item(), e["kl_fake"].item()) == (0.0, 2.0, 8.0)
    g = lf.decoder_loss(rec, fake, l_ae)
    assert g["loss"].item() == pytest.approx(0.25 * (2 + 8) + 2.0 * 3.0)


# --- networks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,channels,in_ch", [(8, [4], 1), (16, [4, 8], 3), (32, [2, 4, 4], 1)])
def test_networks_any_size_and_channels(size, channels, in_ch):
    cfg = NetConfig(image_size=size, channels=channels, in_channels=in_ch, z_dim=6)
    enc, dec = Encoder(cfg), Decoder(cfg)
    mu, logvar = enc(torch.rand(3, in_ch, size, size))
    assert mu.shape == logvar.shape == (3, 6)
    out = dec(torch.randn(3, 6), from_prior=False)
    assert out.shape == (3, in_ch, size, size) and dec.latent_dim == 6
    # residual blocks: a 1x1 skip only where the width changes
    skips = [type(m.skip).__name__ for m in enc.modules() if hasattr(m, "skip")]
    assert skips.count("Conv2d") == sum(a != b for a, b in zip(channels, channels[1:]))


def test_network_shape_rules():
    assert paper_channels(128) == [64, 128, 256, 512, 512]
    assert paper_channels(256) == [32, 64, 128, 256, 512, 512]
    assert paper_channels(1024) == [16, 32, 64, 128, 256, 512, 512, 512]
    assert Encoder(NetConfig(channels=[4, 8])).image_size == 16  # size from the channel list
    with pytest.raises(ConfigError, match="4 \\* 2\\^len"):
        Encoder(NetConfig(image_size=32, channels=[4, 8]))
    with pytest.raises(ConfigError, match="4 \\* 2\\^k"):
        Decoder(NetConfig(image_size=48))


def test_algorithm_takes_size_from_data_and_rejects_mismatch(registry):
    algo = make_algo(registry, size=16, channels=(4, 8), in_ch=3)
    assert algo.encoder.image_size == 16 and algo.decoder.in_channels == 3
    with pytest.raises(ConfigError, match="data gives 32"):
        make_algo(registry, size=32, channels=(4, 8), in_ch=3,
                  encoder={"type": "introvae.encoder", "image_size": 16, "channels": [4, 8], "z_dim": 8})
    with pytest.raises(ConfigError, match="z_dim"):
        make_algo(registry, decoder={"type": "introvae.decoder", "channels": [4, 8], "z_dim": 6})


# --- the two phases ---------------------------------------------------------------------------------
def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("only", ["E", "G"])
def test_each_phase_updates_only_its_network(registry, only):
    torch.manual_seed(0)
    algo = make_algo(registry)
    every = algo.phases
    algo.phases = lambda step: [p for p in every(step) if p.name == only]
    enc0, dec0 = _params(algo.encoder), _params(algo.decoder)
    run_step(algo, {"image": faces(16, 8)}, 0)
    changed, kept = (algo.encoder, dec0) if only == "E" else (algo.decoder, enc0)
    still = algo.decoder if only == "E" else algo.encoder
    assert _same(_params(still), kept)
    assert not _same(_params(changed), enc0 if only == "E" else dec0)


def _kl(mu, logvar):
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()


def test_gradients_match_independent_autograd(registry):
    """E: d[KL(x) + a_E(hinge_r + hinge_p) + beta L_AE]; G: d[beta L_AE + a_G(KL(E'(x_r)) + KL(E'(x_p)))]."""
    torch.manual_seed(0)
    a_e, a_g, beta, m, scale = 0.3, 0.7, 0.9, 1e4, 1.0
    algo = make_algo(registry, loss={"type": "introvae.loss", "margin": m, "alpha_e": a_e, "alpha_g": a_g,
                                     "beta": beta, "ae_scale": scale})
    algo.encoder.double()  # float64: the comparison is about the maths, not summation order
    algo.decoder.double()
    x = faces(16, 6).double()
    enc0, dec0 = copy.deepcopy(algo.encoder), copy.deepcopy(algo.decoder)
    seen: dict = {}
    prepare = algo.prepare

    def keep_state(batch, step):
        seen["state"] = prepare(batch, step)
        return seen["state"]

    algo.prepare = keep_state
    for name in ("encoder", "decoder"):
        opt = algo.optimizers[name]
        step_fn = opt.step

        def capture(*a, _n=name, _f=step_fn, **k):
            seen[_n] = [p.grad.detach().clone() for p in algo.nets[_n].parameters()]
            if _n == "encoder":
                seen["enc_after"] = None
            out = _f(*a, **k)
            if _n == "encoder":
                seen["enc_after"] = copy.deepcopy(algo.encoder)
            return out

        opt.step = capture
    logs = run_step(algo, {"image": x}, 0)
    s = seen["state"]
    eps = ((s["z"] - s["mu"]) / torch.exp(0.5 * s["logvar"])).detach()
    z_p = s["z_p"].detach()

    # encoder: everything through the pre-step nets
    mu, lv = enc0(x)
    x_r = dec0(mu + eps * torch.exp(0.5 * lv))
    x_p = dec0(z_p)
    l_ae = scale * ((x_r - x) ** 2).sum() / x.shape[0]
    kl_r, kl_p = _kl(*enc0(x_r.detach())), _kl(*enc0(x_p.detach()))
    l_e = _kl(mu, lv) + a_e * (F.relu(m - kl_r) + F.relu(m - kl_p)) + beta * l_ae
    want_e = torch.autograd.grad(l_e, list(enc0.parameters()))
    assert logs["E/kl_rec"] == pytest.approx(kl_r.item(), rel=1e-5)
    for got, want in zip(seen["encoder"], want_e):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)

    # decoder: the encoder as stepped by the E phase, the decoder before its step
    enc1 = seen["enc_after"]
    x_r = dec0(s["z"].detach())
    x_p = dec0(z_p)
    l_ae = scale * ((x_r - x) ** 2).sum() / x.shape[0]
    l_g = beta * l_ae + a_g * (_kl(*enc1(x_r)) + _kl(*enc1(x_p)))
    want_g = torch.autograd.grad(l_g, list(dec0.parameters()))
    for got, want in zip(seen["decoder"], want_g):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)


def test_logs_all_five_kl_terms_and_l_ae(registry):
    torch.manual_seed(0)
    logs = run_step(make_algo(registry), {"image": faces(16, 4)}, 0)
    for key in ("E/kl_real", "E/kl_rec", "E/kl_fake", "G/kl_rec", "G/kl_fake", "E/l_ae", "E/loss", "G/loss"):
        assert math.isfinite(logs[key]), key


def test_vae_warmup_is_one_phase_on_both_nets(registry):
    torch.manual_seed(0)
    algo = make_algo(registry, vae_warmup_steps=2)
    assert [p.name for p in algo.phases(1)] == ["VAE"] and [p.name for p in algo.phases(2)] == ["E", "G"]
    enc0, dec0 = _params(algo.encoder), _params(algo.decoder)
    logs = run_step(algo, {"image": faces(16, 4)}, 0)
    assert set(logs) == {"VAE/loss", "VAE/kl_real", "VAE/l_ae"}
    assert not _same(_params(algo.encoder), enc0) and not _same(_params(algo.decoder), dec0)


def test_capabilities(registry):
    torch.manual_seed(0)
    algo = make_algo(registry)
    assert {"sample", "reconstruct", "encode", "decode"} <= algo.capabilities()
    s = algo.sample(5, torch.Generator().manual_seed(1))
    assert s.shape == (5, 1, 16, 16) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, algo.sample(5, torch.Generator().manual_seed(1)))
    assert algo.encode(faces(16, 3)).shape == (3, 8)
    vis = algo.visualize({"image": faces(16, 4)}, 4)
    assert vis["samples"].shape[0] == 4 and vis["reconstructions"].shape == (4, 1, 16, 16)
    assert algo.encoder.training and algo.decoder.training  # modes restored after eval-mode use


# --- short runs ----------------------------------------------------------------------------------------
def _train(registry, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    m = 20.0
    algo = make_algo(registry, size=16, channels=(8, 16), z=16,
                     loss={"type": "introvae.loss", "margin": m, "beta": 1.0, "ae_scale": 1.0})
    data = faces(16)
    g = torch.Generator().manual_seed(seed)
    hist = []
    for step in range(steps):
        idx = torch.randint(0, data.shape[0], (16,), generator=g)
        hist.append(run_step(algo, {"image": data[idx]}, step))
    return hist, m


def _mean(hist, key):
    return sum(h[key] for h in hist) / len(hist)


def test_short_run_l_ae_falls_kl_real_below_margin(registry):
    hist, m = _train(registry, 20)
    assert _mean(hist[-5:], "E/l_ae") < 0.6 * _mean(hist[:3], "E/l_ae")
    assert hist[-1]["E/kl_real"] < m


@pytest.mark.slow
def test_200_step_run_on_lfw_subset(registry):
    hist, m = _train(registry, 200)
    assert _mean(hist[-20:], "E/l_ae") < 0.3 * _mean(hist[:5], "E/l_ae")
    assert _mean(hist[-20:], "E/kl_real") < m
    # the adversarial terms are pushed up towards the margin by E
    assert _mean(hist[-20:], "E/kl_fake") > _mean(hist[:5], "E/kl_fake")


def test_lis_in_front_of_the_decoder(registry):
    """Mixing by config: the LIS stack wraps the decoder; its similarity loss joins the G phase."""
    if "lis.generator" not in registry:
        pytest.skip("lis plugin not available")
    torch.manual_seed(0)
    algo = make_algo(registry, decoder={"type": "lis.generator", "lis": {"k": 2},
                                        "generator": {"type": "introvae.decoder", "channels": [4, 8], "z_dim": 8}})
    logs = run_step(algo, {"image": faces(16, 4)}, 0)
    extra = {k for k in logs if k.startswith("G/")} - {"G/loss", "G/kl_rec", "G/kl_fake", "G/l_ae"}
    assert extra, logs  # the LIS aux loss was added to (and logged with) the decoder phase
    assert not any(k.startswith("E/") and k[2:] not in ("loss", "kl_real", "kl_rec", "kl_fake", "l_ae")
                   for k in logs)


def test_encoder_running_stats_follow_real_images_only(registry):
    """Generated passes normalise with batch statistics but do not move the running averages."""
    torch.manual_seed(0)
    algo = make_algo(registry)
    x = faces(16, 8)
    with torch.no_grad():
        h = algo.encoder.body[0](x)  # first conv, before the step changes it
    run_step(algo, {"image": x}, 0)
    bn = algo.encoder.body[1]
    # one real pass, momentum 0.1, from running mean 0 (the 4 generated passes would change this)
    torch.testing.assert_close(bn.running_mean, 0.1 * h.mean((0, 2, 3)))
    assert bn.momentum == 0.1


def test_train_step_benchmark_quick_rows_are_smoke_only():
    from genfw.core.bench import bf16_supported
    from genfw.plugins.introvae.bench import train_step_benchmark

    rows = list(train_step_benchmark({"device_type": "cpu"}, quick=True))
    steps = [r for r in rows if r["bench"] == "introvae.train-step"]
    precisions = ["fp32", "bf16"] if bf16_supported("cpu") else ["fp32"]
    assert [(r["precision"], r["channels_last"]) for r in steps] == [
        (p, cl) for cl in (False, True) for p in precisions]
    for r in steps:  # quick mode: it ran and its losses are finite, no times or ratios
        assert r["smoke"] and r["losses_finite"]
        assert not any(k.endswith(("_s", "per_s", "gflops")) or "ratio" in k or "speed" in k for k in r)
    if "bf16" in precisions:
        agree = [r for r in rows if r["bench"] == "introvae.l_ae-fp32-vs-bf16"][0]
        assert agree["relative_difference"] < 0.1


def test_step_breakdown_shares_sum_to_one():
    from genfw.plugins.introvae.bench import step_breakdown
    from genfw.registry import get_registry

    row = step_breakdown(get_registry(), torch.device("cpu"), "fp32", False, size=32, batch_size=2,
                         channels=[8, 16, 32])
    shares = row["self_cpu_share"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert shares["convolution"] > 0 and shares["optimizer"] > 0


def test_conv_layers_benchmark_times_every_conv_of_both_nets():
    from genfw.core.bench import bf16_supported
    from genfw.plugins.introvae.bench import conv_layers_benchmark
    from torch import nn

    if not bf16_supported("cpu"):
        pytest.skip("no bf16 on this CPU")
    assert list(conv_layers_benchmark({"device_type": "cpu"}, quick=True))[0]["smoke"]
    from genfw.plugins.introvae import bench

    from genfw.registry import get_registry

    rows = list(bench.conv_layers(get_registry(), torch.device("cpu"), quick=False, cases=[(32, 2, [16, 32, 64])],
                                  rounds=1, skip_slow=False))
    assert len(rows) == 1
    r = rows[0]
    n_convs = sum(isinstance(m, nn.Conv2d)
                  for net in (Encoder(NetConfig(image_size=32, channels=[16, 32, 64], in_channels=3)),
                              Decoder(NetConfig(image_size=32, channels=[16, 32, 64], in_channels=3)))
                  for m in net.modules())
    assert r["layers"] == n_convs
    assert r["conv_fp32_s"] > 0 and r["conv_bf16_s"] > 0
    assert r["bf16_over_fp32"] == pytest.approx(r["conv_fp32_s"] / r["conv_bf16_s"], rel=0.01)
    assert r["layer_ratio_min"] <= r["bf16_over_fp32"] * 1.01 and r["layer_ratio_max"] >= r["bf16_over_fp32"] * 0.99


def test_benchmarks_skip_a_precision_too_slow_to_time_and_say_why(monkeypatch):
    """A bf16 variant whose probe runs under SLOW_VARIANT x fp32 gets a `skipped` row, not minutes of steps."""
    from genfw.core import bench as core_bench
    from genfw.plugins.introvae import bench
    from genfw.registry import get_registry

    if not core_bench.bf16_supported("cpu"):
        pytest.skip("no bf16 on this CPU")
    cpu = torch.device("cpu")
    monkeypatch.setattr(core_bench, "SLOW_VARIANT", 1e9)  # every bf16 probe is "too slow"
    slow = core_bench.slow_variants(cpu, [("fp32", False), ("bf16", False), ("bf16", True)])
    assert set(slow) == {("bf16", False), ("bf16", True)}  # fp32 is never skipped
    assert all("x fp32" in why and "not timed" in why for why in slow.values())
    for rows in (list(bench.conv_layers(get_registry(), cpu, quick=False)),
                 list(bench.loss_agreement(get_registry(), cpu, quick=False))):
        assert len(rows) == 1 and "skipped" in rows[0] and "l_ae_bf16" not in rows[0] and "layers" not in rows[0]
    monkeypatch.setattr(core_bench, "SLOW_VARIANT", 0.0)  # nothing is: the cached probe ratios decide again
    assert core_bench.slow_variants(cpu, [("bf16", False), ("bf16", True)]) == {}


@pytest.mark.parametrize("bn_all", [True, False])
def test_batched_generated_passes_equal_separate_passes(registry, bn_all):
    """x_r and x_p encoded as one batch (per-half BatchNorm statistics) train exactly like two passes."""
    runs = {}
    for batched in (True, False):
        torch.manual_seed(0)
        algo = make_algo(registry, batch_generated=batched, bn_train_all_passes=bn_all)
        algo.encoder.double()
        algo.decoder.double()
        calls = []
        algo.encoder.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
        logs = [run_step(algo, {"image": faces(16, 8).double()[4 * i:4 * i + 4]}, i) for i in range(2)]
        runs[batched] = (logs, [p.detach().clone() for n in ("encoder", "decoder") for p in algo.nets[n].parameters()],
                         [b.clone() for b in algo.encoder.buffers()], calls)
    (logs_b, params_b, bufs_b, calls_b), (logs_s, params_s, bufs_s, calls_s) = runs[True], runs[False]
    assert calls_b == [4, 8, 8] * 2 and calls_s == [4] * 10  # 3 encoder passes per step instead of 5
    for got, want in zip(logs_b, logs_s):
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-12)
    for got, want in zip(params_b + bufs_b, params_s + bufs_s):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
