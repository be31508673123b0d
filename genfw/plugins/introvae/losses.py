"""The introspective loss: KL regulariser, reconstruction term and the margin (hinge) game.

Works with any encoder that returns (mu, logvar) and any decoder: every method takes tensors.
KL terms are computed in float32 because they are sums over hundreds of latent dimensions and
the hinge compares them against a margin of ~100: bf16's 8-bit mantissa would quantise them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn


@define(kw_only=True)
class IntroVAELossConfig:
    margin: float = field(default=120.0, validator=v.gt(0.0))    # m: KL target of rec./fake images for E
    alpha_e: float = field(default=0.25, validator=v.ge(0.0))    # weight of E's hinge terms
    alpha_g: float = field(default=0.25, validator=v.ge(0.0))    # weight of G's KL terms
    beta: float = field(default=0.05, validator=v.ge(0.0))       # weight of L_AE in both losses
    ae_scale: float = field(default=0.5, validator=v.gt(0.0))    # L_AE factor: paper 0.5, reference code 1.0
    hinge: str = field(default="batch", validator=v.in_(("batch", "sample")))  # hinge on batch-mean KL (ref) or per sample


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 in, float32 out; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class IntroVAELoss(nn.Module):
    """L_E = KL(E(x)) + alpha_E * sum_s [m - KL(E(ng(x_s)))]^+ + beta * L_AE;
    L_G = alpha_G * sum_s KL(E(x_s)) + beta * L_AE, for s in {reconstruction, prior sample}."""

    roles = ("introspective-loss",)

    def __init__(self, cfg: IntroVAELossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or IntroVAELossConfig()

    @staticmethod
    def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims: shape N."""
        mu, logvar = _wide(mu).flatten(1), _wide(logvar).flatten(1)
        return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-sample sum, batch mean."""
        return self.kl_per_sample(mu, logvar).mean()

    def ae(self, x: torch.Tensor, x_r: torch.Tensor) -> torch.Tensor:
        """ae_scale * squared error summed over a sample's pixels and channels, batch mean."""
        err = F.mse_loss(_wide(x_r), _wide(x), reduction="sum") / x.shape[0]
        return self.cfg.ae_scale * err

    def hinge(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([m - KL]^+, batch-mean KL); the hinge acts on the batch mean unless hinge = "sample"."""
        kl = self.kl_per_sample(mu, logvar)
        if self.cfg.hinge == "sample":
            return F.relu(self.cfg.margin - kl).mean(), kl.mean()
        kl_mean = kl.mean()
        return F.relu(self.cfg.margin - kl_mean), kl_mean

    def encoder_loss(self, real: tuple[torch.Tensor, torch.Tensor], rec: tuple[torch.Tensor, torch.Tensor],
                     fake: tuple[torch.Tensor, torch.Tensor], l_ae: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_E from E's (mu, logvar) on x, ng(x_r), ng(x_p) and an L_AE carrying E's gradient."""
        kl_real = self.kl(*real)
        h_rec, kl_rec = self.hinge(*rec)
        h_fake, kl_fake = self.hinge(*fake)
        loss = kl_real + self.cfg.alpha_e * (h_rec + h_fake) + self.cfg.beta * l_ae
        return {"loss": loss, "kl_real": kl_real.detach(), "kl_rec": kl_rec.detach(),
                "kl_fake": kl_fake.detach(), "l_ae": l_ae.detach()}

    def decoder_loss(self, rec: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor],
                     l_ae: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_G from the (updated) E's (mu, logvar) on x_r, x_p (not detached) and L_AE."""
        kl_rec = self.kl(*rec)
        kl_fake = self.kl(*fake)
        loss = self.cfg.alpha_g * (kl_rec + kl_fake) + self.cfg.beta * l_ae
        return {"loss": loss, "kl_rec": kl_rec.detach(), "kl_fake": kl_fake.detach(), "l_ae": l_ae.detach()}

    def vae_loss(self, real: tuple[torch.Tensor, torch.Tensor], l_ae: torch.Tensor,
                 beta: float = 0.0) -> dict[str, torch.Tensor]:
        """Plain VAE (alpha = 0): KL + beta * L_AE, beta defaulting to the introspective one."""
        kl_real = self.kl(*real)
        loss = kl_real + (beta or self.cfg.beta) * l_ae
        return {"loss": loss, "kl_real": kl_real.detach(), "l_ae": l_ae.detach()}

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor, x: torch.Tensor, x_r: torch.Tensor) -> torch.Tensor:
        """The plain-VAE objective of one batch (a single tensor, for generic callers)."""
        return self.vae_loss((mu, logvar), self.ae(x, x_r))["loss"]


def loss_example(module: IntroVAELoss) -> tuple[torch.Tensor, ...]:
    mu = torch.randn(2, 4, requires_grad=True)
    logvar = torch.randn(2, 4, requires_grad=True)
    x = torch.rand(2, 1, 8, 8)
    return mu, logvar, x, torch.rand(2, 1, 8, 8, requires_grad=True)


def loss_cases(module: IntroVAELoss) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Contract cases: a perfect VAE (posterior = prior, exact reconstruction) vs a poor one."""
    x = torch.rand(2, 1, 8, 8)
    good = (torch.zeros(2, 4, requires_grad=True), torch.zeros(2, 4, requires_grad=True), x,
            x.clone().requires_grad_(True))
    bad = (torch.full((2, 4), 2.0, requires_grad=True), torch.ones(2, 4, requires_grad=True), x,
           (1 - x).requires_grad_(True))
    return good, bad
