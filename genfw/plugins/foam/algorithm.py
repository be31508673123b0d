"""The FOAM training algorithm: progressive growing with FOAM blending, phases D then G.

Per step: the stage and alpha come from the images seen (`schedule_at`); images, masks and
landmark maps are average-pooled from the top level to the stage's size (the paper; max-pooled
masks and per-level rendering are options); `prepare` runs G once (both branches while growing,
the r-1 branch on a snapshot of its weights); phase "D" trains D on real images and on G's outputs
(eq. 9-10; the composite is an option) drawn partly from a history pool, plus the attribute head
on real images; phase "G" trains G with adv + 2 attr + 500 rec + 8 feat + 5000 bdy.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import attrs
import torch
import torch.nn.functional as F
from attrs import define, field, validators as v

from genfw import Algorithm, ConfigError, GenfwError, Phase
from genfw.core.nn import to_signed, to_unit
from genfw.core.roles import Slot, build_slot, probe_discriminator
from genfw.plugins.foam.filters import down_mask
from genfw.plugins.foam.losses import attribute_loss, boundary_l1, feature_loss, masked_l1
from genfw.plugins.foam.networks import num_levels
from genfw.plugins.foam.slots import CONDITIONINGS, FULL_CONDITIONING, NONE_FIX, call_discriminator

log = logging.getLogger("genfw.foam")


@attrs.define(frozen=True)
class Stage:
    stage: int        # 1-based level: 1 = 4x4
    alpha: float      # FOAM / fade-in weight of the newest level (1 when stabilising)
    growing: bool


def schedule_at(images: int, levels: int, first_images: int, grow_images: list[int],
                stabilise_images: int) -> Stage:
    """Stabilise at 4x4 for first_images; then per level grow (alpha rises linearly with images
    seen) and stabilise. grow_images[i] is level i+2's growing length (the last entry repeats).
    Past the end, training stays at the top level with alpha 1."""
    if images < first_images or levels == 1:
        return Stage(1, 1.0, False)
    rest = images - first_images
    for level in range(2, levels + 1):
        grow = grow_images[min(level - 2, len(grow_images) - 1)]
        if rest < grow:
            return Stage(level, rest / grow, True)
        rest -= grow
        if rest < stabilise_images or level == levels:
            return Stage(level, 1.0, False)
        rest -= stabilise_images
    return Stage(levels, 1.0, False)


def pool_to(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.adaptive_avg_pool2d(x, size)


def mask_to(mask: torch.Tensor, size: int, pooling: str = "average") -> torch.Tensor:
    """The hole at `size`: average pooling (the paper: fractional at hole borders) or max pooling (a
    coarse pixel is a hole if any of its fine pixels is)."""
    if pooling == "average":
        return pool_to(mask, size)
    while mask.shape[-1] > size:
        mask = down_mask(mask)
    return mask


@define(kw_only=True)
class FOAMConfig:
    generator: dict = field(factory=lambda: {"type": "foam.generator"})
    discriminator: dict = field(factory=lambda: {"type": "foam.discriminator"})
    landmarks: dict = field(factory=lambda: {"type": "foam.sketch"})   # landmark encoding (kind layer)
    use_landmarks: bool = True        # condition G and D on landmarks (the data must carry them)
    use_attributes: bool = True       # condition on the data's attributes when it has any
    gan_loss: dict = field(factory=lambda: {"type": "core.bce"})
    lambda_adv: float = field(default=1.0, validator=v.ge(0.0))
    lambda_attr: float = field(default=2.0, validator=v.ge(0.0))
    lambda_rec: float = field(default=500.0, validator=v.ge(0.0))
    lambda_feat: float = field(default=8.0, validator=v.ge(0.0))
    lambda_bdy: float = field(default=5000.0, validator=v.ge(0.0))
    kappa: float = field(default=0.7, validator=[v.ge(0.0), v.le(1.0)])
    boundary_kernel: int = field(default=7, validator=v.gt(0))
    use_feature_loss: bool = True     # VGG-16 relu2_2; needs the vgg16-imagenet weights
    vgg_weights: str = "vgg16-imagenet"  # the asset name, or a file of it (.pth / .safetensors)
    lr: float = field(default=1e-4, validator=v.gt(0.0))
    beta1: float = field(default=0.5, validator=[v.ge(0.0), v.lt(1.0)])   # paper silent
    beta2: float = field(default=0.999, validator=[v.ge(0.0), v.lt(1.0)])
    first_images: int = field(default=600_000, validator=v.gt(0))        # 4x4 stabilising
    grow_images: list[int] = field(factory=lambda: [300_000], validator=v.deep_iterable(v.gt(0)))
    stabilise_images: int = field(default=430_000, validator=v.ge(0))
    pool_size: int = field(default=50, validator=v.ge(0))                 # history of completed images (0: off)
    pool_fraction: float = field(default=0.5, validator=[v.ge(0.0), v.le(1.0)])  # share of D's fakes from it
    # conditioning per level: the paper average-pools masks and landmark maps from the top level
    mask_pooling: str = field(default="average", validator=v.in_(("average", "max")))
    landmark_maps: str = field(default="pooled", validator=v.in_(("pooled", "rendered")))  # rendered: per level
    # what D judges as fake: G's full output (eq. 9-10) or the composite (generated hole, real context)
    d_input: str = field(default="output", validator=v.in_(("output", "composite")))
    # "full": D takes landmarks, stage and alpha (foam.discriminator); "none": an unconditioned image
    # discriminator (csa.patch-discriminator, core.dcgan-discriminator, ...) judging at the run's size
    discriminator_conditioning: str = field(default="full", validator=v.in_(CONDITIONINGS))


class FOAMAlgorithm(Algorithm):
    """FOAM face completion (structure-aware, attribute-controlled, progressively grown)."""

    slots = (Slot("generator", "masked-generator", "G(observed, mask, landmarks=, attributes=, stage=, alpha=) -> "
                                                   "{output, ...}; foam.generator (its attention slots per level)",
                  provides=("landmarks", "attributes", "stage", "alpha"), need={"conditioning": ("stage", "alpha")}),
             # with the default discriminator_conditioning = "full"; unconditioned discriminators fit
             # with discriminator_conditioning = "none" (not listed here, since they need that option)
             Slot("discriminator", "image-discriminator",
                  "D(image, landmarks=, stage=, alpha=) -> {cls, attr?} logits; unconditioned ones with "
                  'discriminator_conditioning = "none"', provides=("landmarks", "stage", "alpha"),
                  need={"conditioning": tuple(sorted(FULL_CONDITIONING))},
                  alternatives=(({"discriminator_conditioning": "none"}, (), {"conditioning": ()}),)),
             Slot("landmarks", "landmark-renderer", "68 landmarks -> maps at any size (foam.sketch, foam.dots)",
                  enabled_by="use_landmarks"),
             Slot("gan_loss", "gan-loss", "standard (log) GAN loss in the paper"))

    def build_networks(self, ctx) -> dict:
        cfg = self.cfg
        if not ctx.has_mask:
            raise ConfigError('foam.algorithm completes holes: add a [mask] table (e.g. type = "core.random-rect")')
        if cfg.use_landmarks and not ctx.has_landmarks:
            raise ConfigError("foam.algorithm is conditioned on landmarks but the data has none; use data with "
                              "68-point landmarks (core.synthetic-faces, core.celeba) or set algorithm.use_landmarks = false")
        size = ctx.image_size
        if size < 4 or 2 ** (size.bit_length() - 1) != size:
            raise ConfigError(f"foam grows 4 -> image_size by doubling; image_size must be a power of two, got {size}")
        reg = ctx.registry
        self.levels = num_levels(size)
        self.encoder = None
        lm_ch = 0
        if cfg.use_landmarks:
            self.encoder = build_slot(reg, cfg.landmarks, role="landmark-renderer", path="algorithm.landmarks")
            lm_ch = int(getattr(self.encoder, "out_channels", 1))
        self.num_attributes = ctx.num_attributes if cfg.use_attributes else 0
        self.image_size = size
        data = {"image_size": size, "image_channels": ctx.channels, "channels": ctx.channels,
                "landmark_channels": lm_ch, "num_attributes": self.num_attributes}
        d_data = data if cfg.discriminator_conditioning == "full" else {**data, "landmark_channels": 0}
        self.gan = build_slot(reg, cfg.gan_loss, role="gan-loss", path="algorithm.gan_loss")
        full = cfg.discriminator_conditioning == "full"
        probe = None if full else probe_discriminator(ctx.channels, size)
        nets = {"G": self._build(reg, cfg.generator, "masked-generator", data, "algorithm.generator",
                                 need={"conditioning": ("stage", "alpha")},
                                 fix={"conditioning": "foam.algorithm grows its generator: use foam.generator "
                                                      "(or a masked generator that takes stage and alpha)"}),
                "D": self._build(reg, cfg.discriminator, "image-discriminator", d_data, "algorithm.discriminator",
                                 need={"output": getattr(self.gan, "expects", None),
                                       "conditioning": FULL_CONDITIONING if full else None},
                                 fix={"conditioning": NONE_FIX}, probe=probe)}
        self.vgg = None
        if cfg.use_feature_loss and cfg.lambda_feat > 0:
            if ctx.channels != 3:
                raise ConfigError("the feature loss uses VGG-16 on RGB; set algorithm.use_feature_loss = false")
            from genfw.core.vgg import VGG16Features

            self.vgg = VGG16Features(("relu2_2",), cfg.vgg_weights, ctx.allow_random_weights).to(ctx.device)
        else:
            log.warning("foam: feature loss (VGG-16 relu2_2) off in this configuration; the paper presets use it")
        self.images = 0
        self._reset_pool()
        return nets

    @staticmethod
    def _build(registry, spec: dict, role: str, data: dict, path: str, **checks):
        # the data decide sizes and channels, whatever a saved (fully resolved) config says
        try:
            entry = registry.get(str(spec.get("type", "")))
        except GenfwError:
            entry = None   # build_slot says what is wrong
        fields = attrs.fields_dict(entry.config) if entry is not None and entry.config is not None else {}
        return build_slot(registry, {**spec, **{k: x for k, x in data.items() if k in fields}}, role=role,
                          path=path, **checks)

    def build_optimizers(self, nets) -> dict:
        betas = (self.cfg.beta1, self.cfg.beta2)
        return {n: torch.optim.Adam(net.parameters(), lr=self.cfg.lr, betas=betas) for n, net in nets.items()}

    def phases(self, step: int) -> list[Phase]:
        return [Phase("D", ("D",), self._d_loss), Phase("G", ("G",), self._g_loss)]

    # --- schedule --------------------------------------------------------------------------------
    def progress(self, images: int | None = None) -> Stage:
        c = self.cfg
        return schedule_at(self.images if images is None else images, self.levels, c.first_images,
                           list(c.grow_images), c.stabilise_images)

    # --- history pool ----------------------------------------------------------------------------
    def _reset_pool(self, size: int = 0) -> None:
        self.pool: dict[str, torch.Tensor] = {}
        self.pool_px = size

    def _pool_query(self, fake: torch.Tensor, lm: torch.Tensor | None, attrs_: torch.Tensor | None,
                    low_lm: torch.Tensor | None = None):
        """Completed images for D: each sample is, with probability pool_fraction once the pool is
        full, swapped with a random stored one (which the new sample replaces)."""
        n, size = len(fake), fake.shape[-1]
        if self.cfg.pool_size == 0:
            return fake, lm, attrs_, low_lm
        if self.pool_px != size:  # completions of a coarser stage are not fakes of this one
            self._reset_pool(size)
        items = {"image": fake.detach()}
        if lm is not None:
            items["landmarks"] = lm.detach()
        if attrs_ is not None:
            items["attributes"] = attrs_.detach()
        if low_lm is not None:
            items["low_landmarks"] = low_lm.detach()
        out = {k: t.clone() for k, t in items.items()}
        for i in range(n):
            count = len(self.pool["image"]) if self.pool else 0
            if count < self.cfg.pool_size:
                for k, t in items.items():
                    self.pool[k] = torch.cat([self.pool[k], t[i:i + 1]]) if k in self.pool else t[i:i + 1].clone()
            elif float(torch.rand(())) < self.cfg.pool_fraction:
                j = int(torch.randint(count, ()))
                for k, t in items.items():
                    out[k][i] = self.pool[k][j]
                    self.pool[k][j] = t[i]
        return out["image"], out.get("landmarks"), out.get("attributes"), out.get("low_landmarks")

    # --- forward ---------------------------------------------------------------------------------
    def _encode_landmarks(self, landmarks: torch.Tensor | None, size: int) -> torch.Tensor | None:
        if self.encoder is None:
            return None
        if landmarks is None:
            raise GenfwError("this FOAM model is conditioned on landmarks; pass landmarks (N x 68 x 2 in [0, 1])")
        return self.encoder(landmarks.to(self.ctx.device).float(), size)

    def _attributes(self, attributes: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.num_attributes:
            return None
        if attributes is None:
            raise GenfwError(f"this FOAM model is conditioned on {self.num_attributes} attributes; pass attributes")
        return attributes.to(self.ctx.device).float().reshape(n, -1)

    def _condition(self, image, mask, landmarks, size: int, low: bool) -> dict:
        """Everything G and D see at `size`, from the top level (the images' own size): target x,
        observation obs (hole grey), mask, landmark maps; with low=True also the r-1 inputs when
        they are not the plain average pooling that G and D apply themselves."""
        cfg, top = self.cfg, image.shape[-1]
        x_top = to_signed(image)
        m_top = (mask > 0.5).to(x_top.dtype)
        out = {"x": pool_to(x_top, size), "obs": pool_to((1 - m_top) * x_top, size),
               "mask": mask_to(m_top, size, cfg.mask_pooling), "lmap": None, "low_mask": None, "low_lmap": None}
        if self.encoder is not None:
            if cfg.landmark_maps == "pooled":
                out["lmap"] = pool_to(self._encode_landmarks(landmarks, top), size)
            else:
                out["lmap"] = self._encode_landmarks(landmarks, size)
                if low:
                    out["low_lmap"] = self._encode_landmarks(landmarks, size // 2)
        if low and cfg.mask_pooling == "max":
            out["low_mask"] = down_mask(out["mask"])
        return out

    def _complete(self, image, mask, landmarks, attributes, st: Stage, snapshot: bool = True) -> dict:
        size = 4 * 2 ** (st.stage - 1)
        growing = st.stage > 1 and st.alpha < 1.0
        c = self._condition(image, mask, landmarks, size, growing)
        a = self._attributes(attributes, len(c["x"]))
        G = self.nets["G"]
        if growing and snapshot and G.fixed_level != st.stage - 1:
            G.freeze_previous(st.stage - 1)   # the stage trained so far becomes G^fixed_{r-1}
        out = G(c["obs"], c["mask"], c["lmap"], a, stage=st.stage, alpha=st.alpha,
                low_mask=c["low_mask"], low_landmarks=c["low_lmap"])
        return {**c, "attr": a, **out}

    def prepare(self, batch: dict, step: int) -> dict:
        if batch.get("mask") is None:
            raise GenfwError("foam.algorithm needs batches with a 'mask' (configure a [mask] table)")
        dev = self.ctx.device
        st = self.progress()
        image = batch["image"].to(dev)
        state = self._complete(image, batch["mask"].to(dev), batch.get("landmarks"), batch.get("attributes"), st)
        state["stage"], state["n"] = st, len(image)
        if self.cfg.d_input == "output":   # eq. 9-10: D judges G's output, context included
            state["fake"] = state["output"]
        else:                              # option: generated hole, real context (what a user gets)
            state["fake"] = state["output"] * state["mask"] + state["x"] * (1 - state["mask"])
        state["d_fake"] = self._pool_query(state["fake"], state["lmap"], state["attr"], state["low_lmap"])
        return state

    def _d(self, image, lmap, st: Stage, low_lmap=None) -> dict:
        return call_discriminator(self.nets["D"], self.cfg.discriminator_conditioning, image, lmap, low_lmap,
                                  st.stage, st.alpha, self.image_size)

    def _d_loss(self, s: dict) -> dict:
        st = s["stage"]
        real = self._d(s["x"], s["lmap"], st, s["low_lmap"])
        fake_img, fake_lm, _, fake_low = s["d_fake"]
        fake = self._d(fake_img, fake_lm, st, fake_low)
        out = {"adv": self.gan.d(real["cls"], fake["cls"])}
        total = self.cfg.lambda_adv * out["adv"]
        if "attr" in real:
            out["attr_real"] = attribute_loss(real["attr"], s["attr"])
            total = total + self.cfg.lambda_attr * out["attr_real"]
        out["loss"] = total
        return out

    def _g_loss(self, s: dict) -> dict:
        cfg, st = self.cfg, s["stage"]
        target, output, m = to_unit(s["x"]), to_unit(s["output"]), s["mask"]
        fake = self._d(s["fake"], s["lmap"], st, s["low_lmap"])
        real = self._d(s["x"], s["lmap"], st, s["low_lmap"])
        terms = {"adv": self.gan.g(fake["cls"], real["cls"].detach())}
        total = cfg.lambda_adv * terms["adv"]
        if "attr" in fake:
            terms["attr_fake"] = attribute_loss(fake["attr"], s["attr"])
            total = total + cfg.lambda_attr * terms["attr_fake"]
        terms["rec"] = masked_l1(target, output, m, cfg.kappa)
        terms["bdy"] = boundary_l1(target, output, m, cfg.boundary_kernel)
        total = total + cfg.lambda_rec * terms["rec"] + cfg.lambda_bdy * terms["bdy"]
        if self.vgg is not None:
            with torch.no_grad():
                phi_t = self.vgg(target)["relu2_2"]
            terms["feat"] = feature_loss(phi_t, self.vgg(output)["relu2_2"])
            total = total + cfg.lambda_feat * terms["feat"]
        with torch.no_grad():
            terms["hole_l1"] = ((target - output).abs() * m).sum() / (m.sum() * target.shape[1]).clamp_min(1)
        terms["loss"] = total
        return terms

    def end_step(self, state: dict, step: int) -> dict[str, float]:
        st = state["stage"]
        self.images += int(state["n"])
        return {"stage": float(st.stage), "alpha": float(st.alpha), "resolution": float(4 * 2 ** (st.stage - 1))}

    # --- checkpointed state ----------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        G = self.nets["G"]
        return {"images": self.images, "pool_px": self.pool_px,
                "pool_count": int(len(self.pool["image"])) if self.pool else 0,
                "fixed_level": int(G.fixed_level) if G.fixed_state() else 0}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"pool/{k}": t.detach().contiguous() for k, t in self.pool.items()}
        # the growing stage's fixed G_{r-1}: not the current weights, so it must travel with the run
        out.update({f"fixed/{k}": t.contiguous() for k, t in self.nets["G"].fixed_state().items()})
        return out

    def load_extra(self, state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
        self.images = int(state.get("images", 0))
        self._reset_pool(int(state.get("pool_px", 0)))
        fixed = {}
        for k, t in tensors.items():
            if k.startswith("pool/"):
                self.pool[k[5:]] = t.to(self.ctx.device).clone()
            elif k.startswith("fixed/"):
                fixed[k[6:]] = t
        if fixed and int(state.get("fixed_level", 0)):
            self.nets["G"].load_fixed(int(state["fixed_level"]), fixed)

    # --- capabilities ----------------------------------------------------------------------------
    def inpaint(self, images: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor | None = None,
                attributes: torch.Tensor | None = None, **options: Any) -> dict[str, torch.Tensor]:
        """Complete holes at the current stage; "output" is at the images' size with the known pixels
        exact. "filters_read" / "filters_write" are the transformed filters F' used (all ones once a
        stage stabilises: the final model no longer needs the low branch), at the images' size."""
        dev = self.ctx.device
        images = images.to(dev)
        hole = (masks.to(dev) > 0.5).to(images.dtype)
        st = self.progress()
        G = self.nets["G"]
        was = G.training
        G.eval()
        try:
            with torch.no_grad():
                res = self._complete(images, hole, landmarks, attributes, st, snapshot=False)
        finally:
            G.train(was)
        size = images.shape[-1]
        pred = F.interpolate(to_unit(res["output"]), size=images.shape[-2:], mode="bilinear",
                             align_corners=False).clamp(0, 1) if res["output"].shape[-1] != size \
            else to_unit(res["output"]).clamp(0, 1)
        ones = torch.ones_like(hole)
        big = lambda f: F.interpolate(f, size=images.shape[-2:], mode="nearest")  # noqa: E731
        return {"output": torch.where(hole > 0.5, pred, images),
                "filters_read": big(res["filter_read_t"]) if "filter_read_t" in res else ones,
                "filters_write": big(res["filter_write_t"]) if "filter_write_t" in res else ones}

    def level_filters(self, images, masks, landmarks=None, attributes=None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Raw learned F_read and F_write of every grown level up to the current stage, at the
        images' size (Fig. 1 of the paper: coarse-to-fine attention)."""
        dev = self.ctx.device
        images, G = images.to(dev), self.nets["G"]
        hole = (masks.to(dev) > 0.5).to(images.dtype)
        out = {}
        was = G.training
        G.eval()
        try:
            with torch.no_grad():
                for level, (fr, fw) in self.native_filters(images, hole, landmarks, attributes).items():
                    out[level] = tuple(F.interpolate(f, size=images.shape[-2:], mode="nearest") for f in (fr, fw))
        finally:
            G.train(was)
        return out

    def native_filters(self, images, hole, landmarks=None, attributes=None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Raw F_read / F_write of every grown level at the level's own size (no grad, no new snapshot)."""
        G, out = self.nets["G"], {}
        with torch.no_grad():
            for level in range(2, self.progress().stage + 1):
                size = 4 * 2 ** (level - 1)
                c = self._condition(images, hole, landmarks, size, low=True)
                a = self._attributes(attributes, len(c["x"]))
                fr = G.read_filter(c["obs"], c["mask"], c["lmap"], a, level, c["low_mask"], c["low_lmap"],
                                   snapshot=False)
                fw = G.write_filter(c["obs"], c["mask"], c["lmap"], a, level)
                out[level] = (fr, fw)
        return out

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        images, masks = batch["image"][:n], batch["mask"][:n]
        lm = batch.get("landmarks")
        at = batch.get("attributes")
        lm = None if lm is None else lm[:n]
        at = None if at is None else at[:n]
        res = self.inpaint(images, masks, lm, at)
        hole = (masks.to(images.device) > 0.5).to(images.dtype)
        out = {"input": images * (1 - hole) + 0.5 * hole, "output": res["output"], "target": images}
        if self.encoder is not None:
            out["landmarks"] = self.encoder(lm.to(self.ctx.device).float(), images.shape[-1]).expand(-1, 3, -1, -1)
        for level, (fr, fw) in self.level_filters(images, masks, lm, at).items():
            out[f"filter_read_{4 * 2 ** (level - 1)}px"] = fr.expand(-1, 3, -1, -1)
            out[f"filter_write_{4 * 2 ** (level - 1)}px"] = fw.expand(-1, 3, -1, -1)
        return out

    def capabilities(self) -> set[str]:
        return super().capabilities() | {"visualize"}
