"""The CSA training algorithm: rough + refinement generators against two discriminators (RaLSGAN).

Per step: `prepare` runs both generators once; phase "D" trains the patch and feature
discriminators on the detached refined image; phase "G" trains the rough and refinement nets with
lambda_rec * L_re + lambda_c * L_c + lambda_adv * (patch + feature adversarial terms).
Every generator term is left attached (the reference code detached L_c and the feature-D term).
"""
from __future__ import annotations

import logging
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from attrs import define, field, validators as v

from genfw import Algorithm, ConfigError, GenfwError, Phase
from genfw.core.nn import to_signed, to_unit
from genfw.core.roles import Slot, build_slot, probe_discriminator
from genfw.plugins.csa.discriminators import _vgg, vgg_output
from genfw.plugins.csa.losses import consistency_loss, reconstruction_loss

log = logging.getLogger("genfw.csa")
VGG_WIDTH = 512  # relu4_3 channels


@define(kw_only=True)
class CSAAlgorithmConfig:
    rough: dict = field(factory=lambda: {"type": "csa.rough"})                      # generator spec
    refine: dict = field(factory=lambda: {"type": "csa.refine"})                    # generator spec (CSA inside)
    patch_discriminator: dict = field(factory=lambda: {"type": "csa.patch-discriminator"})
    feature_discriminator: dict = field(factory=lambda: {"type": "csa.feature-discriminator"})
    use_feature_discriminator: bool = True   # needs VGG-16 weights
    gan_loss: dict = field(factory=lambda: {"type": "core.ralsgan"})
    lambda_rec: float = field(default=1.0, validator=v.ge(0.0))            # paper 1, reference 100
    lambda_consistency: float = field(default=0.01, validator=v.ge(0.0))   # paper 0.01, reference 1; needs VGG-16
    lambda_adv: float = field(default=0.002, validator=v.ge(0.0))          # paper 0.002, reference 0.2
    lr: float = field(default=2e-4, validator=v.gt(0.0))
    beta1: float = field(default=0.5, validator=[v.ge(0.0), v.lt(1.0)])
    beta2: float = field(default=0.999, validator=[v.ge(0.0), v.lt(1.0)])
    lr_decay_start: float = field(default=1.0, validator=[v.ge(0.0), v.le(1.0)])  # fraction of steps, then linear to 0
    fill: float = field(default=0.0, validator=[v.ge(-1.0), v.le(1.0)])  # hole value in [-1, 1]
    vgg_weights: str = "vgg16-imagenet"      # asset for the consistency loss's relu4_3


class LinearDecay:
    """LR factor: 1 until `start` steps, then linear to 0 at `total` (the reference's schedule)."""

    def __init__(self, start: int, total: int) -> None:
        self.start, self.total = start, total

    def __call__(self, step: int) -> float:
        if step < self.start or self.total <= self.start:
            return 1.0
        return max(0.0, 1.0 - (step - self.start) / (self.total - self.start))


def _build_for_data(registry, spec: dict, role: str, data: dict, path: str, need: dict | None = None,
                    probe=None, hints: dict | None = None):
    """Build slot `path` (role `role`) whose size and channels must follow the data, whatever the
    resolved config says (a saved config has every default filled in, so `defaults=` alone would not win)."""
    try:
        entry = registry.get(str(spec.get("type", "")))
    except GenfwError:
        entry = None  # build_slot says what is wrong
    fields = attrs.fields_dict(entry.config) if entry is not None and entry.config is not None else {}
    return build_slot(registry, {**spec, **{k: v for k, v in data.items() if k in fields}}, role=role,
                      path=path, need=need, probe=probe, hints=hints)


class CSAAlgorithm(Algorithm):
    """Coherent semantic attention inpainting (Liu et al., ICCV 2019)."""

    G_NETS = ("rough", "refine")
    slots = (Slot("rough", "masked-generator", "G(image, mask) -> coarse image in [-1, 1]"),
             Slot("refine", "refinement-generator", "G([merged, input], mask) -> refined image; csa.refine has "
                                                "the attention slot"),
             Slot("patch_discriminator", "image-discriminator", "D(image) -> scores, no conditioning"),
             Slot("feature_discriminator", "image-discriminator", "D(image) -> scores (VGG features inside)",
                  enabled_by="use_feature_discriminator"),
             Slot("gan_loss", "gan-loss", "relativistic average LSGAN in the paper"))

    def build_networks(self, ctx) -> dict:
        cfg = self.cfg
        if not ctx.has_mask:
            raise ConfigError('csa.algorithm inpaints holes: add a [mask] table (e.g. type = "core.center")')
        img = {"image_size": ctx.image_size, "channels": ctx.channels}
        reg = ctx.registry
        self.gan = build_slot(reg, cfg.gan_loss, role="gan-loss", path="algorithm.gan_loss")
        scores = {"output": getattr(self.gan, "expects", None)}
        probe = probe_discriminator(ctx.channels, ctx.image_size)
        nets = {
            "rough": _build_for_data(reg, cfg.rough, "masked-generator", img, "algorithm.rough"),
            "refine": _build_for_data(reg, cfg.refine, "refinement-generator", img, "algorithm.refine"),
            "patch_d": _build_for_data(reg, cfg.patch_discriminator, "image-discriminator", img,
                                       "algorithm.patch_discriminator", scores, probe),
        }
        needs_vgg = cfg.use_feature_discriminator or cfg.lambda_consistency > 0
        if needs_vgg and ctx.channels != 3:
            raise ConfigError("the consistency loss and feature discriminator use VGG-16 on RGB images; "
                              "set algorithm.lambda_consistency = 0 and use_feature_discriminator = false")
        if cfg.use_feature_discriminator:
            nets["feature_d"] = _build_for_data(
                reg, cfg.feature_discriminator, "image-discriminator", img, "algorithm.feature_discriminator",
                scores, probe, hints={"weights": cfg.vgg_weights, "allow_random_weights": ctx.allow_random_weights})
        self.vgg = None
        if cfg.lambda_consistency > 0:
            width = getattr(nets["refine"], "consistency_width", None)
            if width != VGG_WIDTH:
                raise ConfigError(f"the consistency loss compares with VGG-16 relu4_3 ({VGG_WIDTH} channels) but the "
                                  f"refine network exposes {width}; set refine.consistency_channels = {VGG_WIDTH}")
            self.vgg = _vgg(("relu4_3",), cfg.vgg_weights, ctx.allow_random_weights).to(ctx.device)
        off = [name for name, on in (("consistency loss", cfg.lambda_consistency > 0),
                                     ("feature discriminator", cfg.use_feature_discriminator)) if not on]
        if off:
            log.warning("csa: %s off in this configuration (no VGG-16 needed); the paper presets use them",
                        " and ".join(off))
        return nets

    def build_optimizers(self, nets) -> dict:
        betas = (self.cfg.beta1, self.cfg.beta2)
        return {name: torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=self.cfg.lr, betas=betas)
                for name, net in nets.items()}

    def build_schedulers(self, optimizers) -> dict:
        if self.cfg.lr_decay_start >= 1.0:
            return {}
        total = self.ctx.total_steps
        start = int(round(self.cfg.lr_decay_start * total))
        return {name: torch.optim.lr_scheduler.LambdaLR(opt, LinearDecay(start, total))
                for name, opt in optimizers.items()}

    def _d_names(self) -> tuple[str, ...]:
        return tuple(n for n in ("patch_d", "feature_d") if n in self.nets)

    def phases(self, step: int) -> list[Phase]:
        return [Phase("D", self._d_names(), self._d_loss), Phase("G", self.G_NETS, self._g_loss)]

    # --- forward -------------------------------------------------------------------------------
    def _generate(self, x: torch.Tensor, hole: torch.Tensor, return_attention: bool = False):
        x_in = x * (1 - hole) + self.cfg.fill * hole
        coarse = self.nets["rough"](x_in, hole)
        merged = coarse * hole + x * (1 - hole)
        refined, extras = self.nets["refine"](torch.cat([merged, x_in], 1), hole, return_features=True,
                                              return_attention=return_attention)
        return x_in, coarse, refined, extras

    def prepare(self, batch: dict, step: int) -> dict:
        if batch.get("mask") is None:
            raise GenfwError("csa.algorithm needs batches with a 'mask' (configure a [mask] table)")
        image = batch["image"].to(self.ctx.device)
        mask = batch["mask"].to(self.ctx.device)
        x = to_signed(image)
        hole = (mask > 0.5).to(x.dtype)
        _, coarse, refined, extras = self._generate(x, hole)
        state = {"x": x, "hole": hole, "coarse": coarse, "refined": refined, "extras": extras}
        if self.vgg is not None:
            with torch.no_grad():
                state["target_features"] = vgg_output(self.vgg(image), "relu4_3")
        return state

    # --- losses ----------------------------------------------------------------------------------
    def _d_loss(self, s: dict) -> dict:
        fake = s["refined"].detach()
        patch = self.gan.d(self.nets["patch_d"](s["x"]), self.nets["patch_d"](fake))
        out = {"patch": patch}
        total = patch
        if "feature_d" in self.nets:
            feat = self.gan.d(self.nets["feature_d"](s["x"]), self.nets["feature_d"](fake))
            out["feature"] = feat
            total = total + feat
        out["loss"] = total
        return out

    def _g_loss(self, s: dict) -> dict:
        cfg = self.cfg
        x, hole, coarse, refined = s["x"], s["hole"], s["coarse"], s["refined"]
        terms: dict[str, torch.Tensor] = {"rec": reconstruction_loss(coarse, refined, x)}
        total = cfg.lambda_rec * terms["rec"]
        if self.vgg is not None:
            ex = s["extras"]
            terms["consistency"] = consistency_loss(ex["csa"], ex["mirror"], s["target_features"], ex["mask"])
            total = total + cfg.lambda_consistency * terms["consistency"]
        terms["adv_patch"] = self.gan.g(self.nets["patch_d"](refined), self.nets["patch_d"](x))
        adv = terms["adv_patch"]
        if "feature_d" in self.nets:
            terms["adv_feature"] = self.gan.g(self.nets["feature_d"](refined), self.nets["feature_d"](x))
            adv = adv + terms["adv_feature"]
        total = total + cfg.lambda_adv * adv
        with torch.no_grad():  # progress in [0, 1] units over hole pixels only
            holes = hole.sum().clamp_min(1) * x.shape[1]
            terms["hole_l1"] = ((refined - x).abs() * hole).sum() / holes / 2
        terms["loss"] = total
        return terms

    # --- capabilities ----------------------------------------------------------------------------
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, attention_at: tuple[int, int] | None = None,
                **options: Any) -> dict[str, torch.Tensor]:
        """Complete holes; the known region of "output" is `images` exactly.

        attention_at=(x, y) (pixel column, row) adds "attention": N x H x W, that pixel's row of the
        CSA attention matrix up-sampled to the image (a known pixel attends to itself only).
        """
        dev = self.ctx.device
        images = images.to(dev)
        hole = (masks.to(dev) > 0.5).to(images.dtype)
        modes = {n: net.training for n, net in self.nets.items()}
        for net in self.nets.values():
            net.eval()
        try:
            with torch.no_grad():
                _, coarse, refined, extras = self._generate(to_signed(images), hole, attention_at is not None)
        finally:
            for n, net in self.nets.items():
                net.train(modes[n])
        pred = to_unit(refined).clamp(0, 1)
        out = {"output": torch.where(hole > 0.5, pred, images), "coarse": to_unit(coarse).clamp(0, 1)}
        if attention_at is not None:
            att = extras.get("attention")
            if att is None:
                raise GenfwError("this model's attention layer returns no attention map (refine.attention); "
                                 "--attention-at needs one such as csa.layer")
            fh, fw = extras["mask"].shape[-2:]
            h, w = images.shape[-2:]
            px, py = attention_at
            if not (0 <= px < w and 0 <= py < h):
                raise GenfwError(f"attention pixel ({px}, {py}) is outside the {w}x{h} image")
            row = att[:, (py * fh // h) * fw + px * fw // w].reshape(-1, 1, fh, fw)
            out["attention"] = F.interpolate(row, size=(h, w), mode="nearest")[:, 0]
        return out

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        images, masks = batch["image"][:n], batch["mask"][:n]
        res = self.inpaint(images, masks)
        hole = (masks.to(images.device) > 0.5).to(images.dtype)
        return {"input": images * (1 - hole) + hole, "coarse": res["coarse"], "output": res["output"],
                "target": images}
