"""IntroVAE training (Algorithm 1 of the paper) as two engine phases: encoder "E", then decoder "G".

The decoder runs on a detached copy of the encoder's latent (``z_leaf``). That keeps the decoder's
graph independent of the encoder's weights, which the E phase steps in place before the G phase
back-propagates through x_r. The E phase still needs beta * dL_AE/dE: it takes dL_AE/dz through
the decoder (input gradients only, graph kept for the G phase) and feeds it back into the encoder
through the surrogate ``(z * dL_AE/dz).sum()``, whose encoder gradient is exactly dL_AE/dE. The
G phase then re-uses the decoder's graph, so no decoder forward is ever recomputed.
"""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch
from attrs import define, field, validators as v
from torch import nn

from genfw import Algorithm, ConfigError, Context, Phase, batch_chunks, batch_chunks_exact
from genfw.core.roles import Slot, build_slot, probe_encoder, probe_latent_generator

ENCODER, DECODER = "encoder", "decoder"
# Net config fields the data decides; filled into nested specs (any depth) where left at 0.
_FROM_DATA = ("image_size", "in_channels")


@define(kw_only=True)
class IntroVAEConfig:
    encoder: dict = field(factory=lambda: {"type": "introvae.encoder"})  # any encoder returning (mu, logvar)
    decoder: dict = field(factory=lambda: {"type": "introvae.decoder"})  # any generator G(z, from_prior=...)
    loss: dict = field(factory=lambda: {"type": "introvae.loss"})        # margin, alpha_e/g, beta, ae_scale, hinge
    lr: float = field(default=2e-4, validator=v.gt(0.0))                 # Adam, both nets, no schedule
    adam_beta1: float = field(default=0.9, validator=[v.ge(0.0), v.lt(1.0)])
    adam_beta2: float = field(default=0.999, validator=[v.ge(0.0), v.lt(1.0)])
    fused_adam: bool = True                                              # fused Adam kernel where available (same update)
    vae_warmup_steps: int = field(default=0, validator=v.ge(0))          # plain-VAE steps first (alpha = 0)
    vae_warmup_beta: float = field(default=0.0, validator=v.ge(0.0))     # L_AE weight in warm-up; 0: loss.beta (reference: 1.0)
    bn_train_all_passes: bool = True  # BatchNorm batch statistics in every encoder pass (ref); False: E runs
    #                                   x_r / x_p passes with running statistics
    batch_generated: bool = True      # encode x_r and x_p as one batch with per-pass BatchNorm statistics
    #                                   (same result; encoders that cannot promise that run two passes)


def _adam(params, lr: float, betas: tuple[float, float], fused: bool) -> torch.optim.Optimizer:
    """Adam; the fused kernel (same update, one pass over all tensors) when this torch has it:
    measured 4-8 % faster IntroVAE steps on a 2-core CPU, in fp32 and bf16 alike."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass  # older torch or an unsupported device: the plain loop below
    return torch.optim.Adam(params, lr=lr, betas=betas)


def fill_from_data(spec: Mapping[str, Any], registry, values: Mapping[str, int], path: str = "") -> dict:
    """Copy of a nested component spec with data-decided fields (0 or absent) set from `values`.

    Recurses into nested specs so a wrapper (e.g. LIS in front of the decoder) passes the data's
    size on to the network it wraps. An explicit value that disagrees with the data is an error.
    """
    out = dict(spec)
    entry = registry.get(str(out["type"]))
    fields = {}
    if entry.config is not None:
        import attrs

        fields = {f.name: f for f in attrs.fields(entry.config)}
    for key, val in values.items():
        if key not in fields:
            continue
        default = fields[key].default
        if not isinstance(default, int) and key == "channels":
            continue  # `channels` is a width list in IntroVAE's nets, the image channels elsewhere
        have = out.get(key, 0)
        if not have:
            out[key] = val
        elif have != val:
            raise ConfigError(
                f"{path}.{key} = {have} but the data gives {val}; leave it at 0 to follow the data"
            )
    for key, sub in out.items():
        if isinstance(sub, Mapping) and isinstance(sub.get("type"), str) and sub["type"] in registry:
            out[key] = fill_from_data(sub, registry, values, f"{path}.{key}")
    return out


@contextlib.contextmanager
def _eval_mode(*nets: nn.Module):
    modes = [n.training for n in nets]
    try:
        for n in nets:
            n.eval()
        yield
    finally:
        for n, m in zip(nets, modes):
            n.train(m)


@contextlib.contextmanager
def _running_stats_frozen(net: nn.Module):
    """BatchNorm still normalises with batch statistics but leaves its running averages alone."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None]
    saved = [m.momentum for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


class IntroVAE(Algorithm):
    """Introspective VAE: the encoder is also the adversary of the decoder."""

    cfg: IntroVAEConfig
    slots = (Slot("encoder", "image-encoder", "E(x in [0, 1]) -> (mu, logvar), z_dim = the decoder's latent_dim"),
             Slot("decoder", "latent-generator", "G(z) -> images in [0, 1] (output_range unit); may take "
                                                 "latent_transform"),
             Slot("loss", "introspective-loss", "KL / margin / L_AE terms"))

    def __init__(self, cfg: IntroVAEConfig | None = None) -> None:
        super().__init__(cfg or IntroVAEConfig())
        self.loss_fn = None

    # --- building ----------------------------------------------------------------------------
    def build_networks(self, ctx: Context) -> dict[str, nn.Module]:
        reg = ctx.registry
        data = {"image_size": ctx.image_size, "in_channels": ctx.channels, "channels": ctx.channels}
        # a table without `type` means the plugin's own component with those options
        enc_spec = {"type": "introvae.encoder", **self.cfg.encoder}
        dec_spec = {"type": "introvae.decoder", **self.cfg.decoder}
        enc_spec = fill_from_data(enc_spec, reg, data, "algorithm.encoder")
        dec_spec = fill_from_data(dec_spec, reg, data, "algorithm.decoder")
        # built in this order (encoder, decoder): the parameter initialisation follows the seed
        enc = build_slot(reg, enc_spec, role="image-encoder", path="algorithm.encoder")
        dec = build_slot(reg, dec_spec, role="latent-generator",
                         path="algorithm.decoder", need={"output_range": "unit"},
                         fix={"output_range": 'IntroVAE reconstructs images in [0, 1]: wrap it: '
                                              '{type = "core.range", to = "unit", generator = {...}}'},
                         probe=probe_latent_generator(ctx.channels, ctx.image_size))
        latent = getattr(dec, "latent_dim", None)
        problem = probe_encoder(ctx.channels, ctx.image_size, latent)(enc)
        if problem:
            raise ConfigError(f"algorithm.encoder ({enc_spec['type']}): {problem}")
        self.loss_fn = build_slot(reg, {"type": "introvae.loss", **self.cfg.loss}, role="introspective-loss",
                                  path="algorithm.loss")
        z_enc = getattr(enc, "z_dim", latent)
        if z_enc != latent:
            raise ConfigError(f"algorithm.encoder: z_dim {z_enc} != the decoder's latent_dim {latent}; set both equal")
        return {ENCODER: enc, DECODER: dec}

    def build_optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg.adam_beta1, self.cfg.adam_beta2)
        return {n: _adam(nets[n].parameters(), self.cfg.lr, betas, self.cfg.fused_adam) for n in (ENCODER, DECODER)}

    @property
    def encoder(self) -> nn.Module:
        return self.nets[ENCODER]

    @property
    def decoder(self) -> nn.Module:
        return self.nets[DECODER]

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.latent_dim)

    def _device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    # --- one step ----------------------------------------------------------------------------
    def warming_up(self, step: int) -> bool:
        return step < self.cfg.vae_warmup_steps

    def prepare(self, batch: dict, step: int) -> dict:
        x = batch["image"]
        self.encoder.train()
        self.decoder.train()
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        if self.warming_up(step):
            x_r = self.decoder(z, from_prior=False)
            return {"x": x, "mu": mu, "logvar": logvar, "x_r": x_r, "l_ae": self.loss_fn.ae(x, x_r)}
        z_leaf = z.detach().requires_grad_(True)
        x_r = self.decoder(z_leaf, from_prior=False)
        z_p = torch.randn_like(mu)
        x_p = self.decoder(z_p, from_prior=True)
        return {"x": x, "mu": mu, "logvar": logvar, "z": z, "z_leaf": z_leaf, "z_p": z_p, "x_r": x_r, "x_p": x_p,
                "l_ae": self.loss_fn.ae(x, x_r)}

    def phases(self, step: int) -> list[Phase]:
        if self.warming_up(step):
            return [Phase("VAE", (ENCODER, DECODER), self._vae_loss)]
        return [Phase("E", (ENCODER,), self._encoder_loss), Phase("G", (DECODER,), self._decoder_loss)]

    def _vae_loss(self, s: dict) -> dict:
        return self.loss_fn.vae_loss((s["mu"], s["logvar"]), s["l_ae"], beta=self.cfg.vae_warmup_beta)

    def _encode_generated(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.bn_train_all_passes:
            # batch statistics as in the reference, but the running averages (used by encode /
            # reconstruct in eval mode) keep describing real images only
            with _running_stats_frozen(self.encoder):
                return self.encoder(x)
        with _eval_mode(self.encoder):
            return self.encoder(x)

    def _encode_pair(self, x_r: torch.Tensor, x_p: torch.Tensor) -> tuple[tuple, tuple]:
        """Encoder outputs of x_r and of x_p. As one batch of both where that is exact (the encoder's
        batch norms then keep separate statistics per half): one pass of twice the batch costs less
        than two, most of all for the small deep layers whose cost is per call, not per image."""
        enc = self.encoder
        if self.cfg.batch_generated and x_r.shape == x_p.shape and batch_chunks_exact(enc):
            n = x_r.shape[0]
            with batch_chunks(enc, 2):
                mu, logvar = self._encode_generated(torch.cat([x_r, x_p]))
            return (mu[:n], logvar[:n]), (mu[n:], logvar[n:])
        return self._encode_generated(x_r), self._encode_generated(x_p)

    def _encoder_loss(self, s: dict) -> dict:
        l_ae = s["l_ae"]
        # dL_AE/dz through the decoder; the graph stays for the G phase
        # (backward(inputs=) rather than autograd.grad: FlopCounterMode's module hooks reject the latter)
        z_leaf = s["z_leaf"]
        z_leaf.grad = None
        l_ae.backward(inputs=[z_leaf], retain_graph=True)
        g_z = z_leaf.grad
        # value l_ae, encoder gradient dL_AE/dE: the encoder-side half of the reconstruction term
        l_ae_e = l_ae.detach() + (s["z"] * g_z).sum() - (s["z"] * g_z).sum().detach()
        rec, fake = self._encode_pair(s["x_r"].detach(), s["x_p"].detach())
        return self.loss_fn.encoder_loss((s["mu"], s["logvar"]), rec, fake, l_ae_e)

    def _decoder_loss(self, s: dict) -> dict:
        rec, fake = self._encode_pair(s["x_r"], s["x_p"])
        return self.loss_fn.decoder_loss(rec, fake, s["l_ae"])

    # --- capabilities --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, **options: Any) -> torch.Tensor:
        """Decode prior noise; `temperature` scales it, other options go to the decoder (e.g. LIS's)."""
        temperature = float(options.pop("temperature", 1.0))
        z = torch.randn(n, self.latent_dim, generator=generator, device=generator.device if generator else "cpu")
        z = z.to(self._device()) * temperature
        with _eval_mode(self.decoder):
            return self.decoder(z, from_prior=True, **options).float().clamp(0, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        with _eval_mode(self.encoder):
            mu, _ = self.encoder(images.to(self._device()))
        return mu.float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images of encoder latents (posterior means, interpolations): not prior noise."""
        with _eval_mode(self.decoder):
            return self.decoder(latents.to(self._device()), from_prior=False).float().clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        x = batch["image"][: max(1, n // 2)].to(self._device())
        pairs = torch.stack([x.float(), self.reconstruct(x)], dim=1).flatten(0, 1)  # input, output, ...
        return {"samples": self.sample(n), "reconstructions": pairs}
