"""G-LIS, R-separate and R-iterative as genfw algorithms (built on the core GAN algorithm)."""
from __future__ import annotations

import contextlib
import random
from typing import Any

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

from genfw import ConfigError, GenfwError, Phase
from genfw.core.gan import GANAlgorithm, GANConfig
from genfw.core.nn import drain_aux_losses
from genfw.core.roles import Slot, build_slot
from genfw.plugins.lis.module import fill_zeros, find_stacks


def _pos(inst, attribute, value):
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@contextlib.contextmanager
def eval_mode(*nets: nn.Module):
    """Temporarily switch networks to eval (frozen helpers, sampling), restoring their modes."""
    modes = [(m, m.training) for net in nets for m in net.modules()]
    try:
        for net in nets:
            net.eval()
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@define(kw_only=True)
class GLISConfig(GANConfig):
    """The core GAN's options with the LIS paper's defaults, plus its two-stage learning rate."""

    generator: dict = field(factory=lambda: {
        "type": "lis.generator", "generator": {"type": "lis.dcgan-generator"}, "lis": {"k": 3}})
    discriminator: dict = field(factory=lambda: {"type": "lis.dcgan-discriminator"})
    loss: dict = field(factory=lambda: {"type": "core.bce", "from_probabilities": True})
    optimizer: str = field(default="rmsprop", validator=v.in_(("adam", "rmsprop")))
    lr_g: float = field(default=2e-5, validator=_pos)
    lr_d: float = field(default=2e-5, validator=_pos)
    rms_alpha: float = field(default=0.9, validator=_pos)
    eps: float = field(default=1e-6, validator=_pos)
    image_range: str = field(default="unit", validator=v.in_(("signed", "unit")))  # G ends in a sigmoid
    lr_drop_step: int = field(default=0, validator=v.ge(0))   # from this step on use lr_after (0: never)
    lr_after: float = field(default=0.0, validator=v.ge(0.0))  # the lower rate (0: keep the rate)


class GLIS(GANAlgorithm):
    """BCE GAN on D's probabilities; G's loss gains L_sim from the LIS stack via AuxLoss."""

    def slot_spec(self, ctx, key: str, extra: dict | None = None) -> dict:
        # the LIS reference networks take 0 for "from the data", at any nesting depth
        return fill_zeros(getattr(self.cfg, key), ctx.registry, {**self.network_defaults(ctx), **(extra or {})})

    def build_schedulers(self, optimizers):
        c = self.cfg
        if c.lr_drop_step > 0 and c.lr_after > 0:
            scheds = {}
            for name, opt in optimizers.items():
                base = opt.param_groups[0]["lr"]
                factor = c.lr_after / base
                scheds[name] = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda s, f=factor: 1.0 if s < c.lr_drop_step else f)
            return scheds
        return super().build_schedulers(optimizers)

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.stacks = find_stacks(*self.nets.values())
        for stack in self.stacks:
            stack.rng = torch.Generator()

    def seed_stacks(self, step: int) -> None:
        """Early-stop draws keyed by the step: DDP replicas run the same modules (same parameters
        get gradients on every rank) and a resumed run repeats the uninterrupted one."""
        for i, stack in enumerate(getattr(self, "stacks", [])):
            if stack.rng is not None:
                stack.rng.manual_seed(0x115 + 1000003 * step + i)

    def prepare(self, batch: dict, step: int) -> dict:
        self.seed_stacks(step)
        return super().prepare(batch, step)

    # --- logging ----------------------------------------------------------------------------
    def end_step(self, state: dict, step: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, stack in enumerate(getattr(self, "stacks", [])):
            prefix = "lis/" if i == 0 else f"lis{i}/"
            out.update({prefix + k: val for k, val in stack.stats().items()})
        return out

    # --- sampling ---------------------------------------------------------------------------
    def lis_k(self) -> int:
        stacks = find_stacks(self.nets["G"])
        return stacks[0].k if stacks else 0

    def _generate(self, z: torch.Tensor, lis_steps: Any = None) -> torch.Tensor:
        """G(z) in [0, 1]; lis_steps None: all modules (eval), int: exactly that many."""
        g = self.nets["G"]
        if lis_steps is None:
            return self.to_unit_range(g(z, from_prior=True).float())
        k = self.parse_lis_steps(lis_steps)
        if not find_stacks(g):
            return self.to_unit_range(g(z, from_prior=True).float())
        return self.to_unit_range(g(z, from_prior=True, lis_steps=k).float())

    def parse_lis_steps(self, lis_steps: Any) -> int | str:
        if lis_steps == "all":
            return "all"
        K = self.lis_k()
        try:
            k = int(lis_steps)
        except (TypeError, ValueError):
            raise GenfwError(f"--lis-steps expects 'all' or an integer 0..{K}, got {lis_steps!r}") from None
        if not 0 <= k <= K:
            what = f"0..{K}" if K else "0 (this generator has no LIS modules)"
            raise GenfwError(f"--lis-steps {k} is out of range: this run's generator allows {what}")
        return k

    def lis_strip(self, z: torch.Tensor) -> torch.Tensor:
        """For each z, the images after 0, 1, ..., K modules side by side (N x C x H x (K+1)W)."""
        return torch.cat([self._generate(z, k) for k in range(self.lis_k() + 1)], dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, lis_steps: Any = None,
               **options: Any) -> torch.Tensor:
        if options:
            raise GenfwError(f"{type(self).__name__}.sample got unknown options: {', '.join(sorted(options))}")
        z = self.sample_latent(n, generator)
        with eval_mode(*self.nets.values()):
            if lis_steps == "all":
                return self.lis_strip(z)
            return self._generate(z, lis_steps)

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        out = {"samples": self.sample(n)}
        if self.lis_k() > 0:
            out["lis_strip"] = self.sample(min(n, 8), lis_steps="all")
        return out


# --- R-separate --------------------------------------------------------------------------------
@define(kw_only=True)
class RSeparateConfig(GLISConfig):
    generator: dict = field(factory=lambda: {"type": "lis.dcgan-generator"})  # a "normal" G by default
    reverser: dict = field(factory=lambda: {"type": "lis.reverser", "dropout": 0.1})
    lr_g: float = field(default=5e-5, validator=_pos)
    lr_d: float = field(default=5e-5, validator=_pos)
    lr_r: float = field(default=5e-5, validator=_pos)
    init_from: str = ""   # run or checkpoint dir whose G and D are loaded (then frozen); "" = train them here
    gan_steps: int = field(default=0, validator=v.ge(0))  # with init_from "": G/D steps before R's


class RSeparate(GLIS):
    """Train R alone on MSE(R(G(z)), z) with G and D frozen; samples are G(R(G(z)))."""

    slots = GLIS.slots + (Slot("reverser", "latent-regressor", "R(image) -> z"),)

    def __init__(self, cfg=None) -> None:
        super().__init__(cfg or RSeparateConfig())
        self.init_loaded = False

    def build_networks(self, ctx):
        nets = super().build_networks(ctx)
        latent = int(nets["G"].latent_dim)
        nets["R"] = build_slot(ctx.registry, self.slot_spec(ctx, "reverser", {"latent_dim": latent}),
                               role="latent-regressor", path="algorithm.reverser",
                               hints={**self.network_defaults(ctx), "latent_dim": latent})
        return nets

    def build_optimizers(self, nets):
        # G/D get optimizers even when loaded and frozen: checkpoints then look like any GAN run's
        opts = super().build_optimizers(nets)
        opts["R"] = self.make_optimizer(nets["R"].parameters(), self.cfg.lr_r)
        return opts

    def gan_phase(self, step: int) -> bool:
        return not self.cfg.init_from and step < self.cfg.gan_steps

    def load_init(self) -> None:
        """Copy G and D from `init_from` (once per run: the flag is checkpointed)."""
        if self.init_loaded or not self.cfg.init_from:
            return
        try:
            from genfw.core.checkpoint import load_run
        except ImportError as exc:  # pragma: no cover - the engine ships checkpoint.py
            raise GenfwError(f"init_from needs genfw.core.checkpoint: {exc}") from None
        src, _ = load_run(self.cfg.init_from, device=str(self.device))
        for name in ("G", "D"):
            if name not in src.nets:
                raise ConfigError(f"init_from {self.cfg.init_from}: that run has no network {name!r}")
            try:
                self.nets[name].load_state_dict(src.nets[name].state_dict())
            except RuntimeError as exc:
                raise ConfigError(
                    f"init_from {self.cfg.init_from}: its {name} does not match algorithm.{'generator' if name == 'G' else 'discriminator'} "
                    f"here (use the same network config): {str(exc).splitlines()[0]}") from None
        self.init_loaded = True

    def extra_state(self) -> dict:
        return {"init_loaded": self.init_loaded}

    def load_extra(self, state, tensors) -> None:
        self.init_loaded = bool(state.get("init_loaded", False))

    def prepare(self, batch: dict, step: int) -> dict:
        if self.gan_phase(step):
            return super().prepare(batch, step)
        self.load_init()
        self.seed_stacks(step)
        return {"batch": batch}

    def r_loss(self, state: dict) -> dict:
        g, r = self.nets["G"], self.nets["R"]
        n = state["batch"]["image"].shape[0]
        z = self.sample_latent(n)
        with eval_mode(g), torch.no_grad():
            x = g(z, from_prior=True)
        drain_aux_losses(g)
        loss = F.mse_loss(r(x), z)
        return {"loss": loss, "mse": loss}

    def phases(self, step: int) -> list[Phase]:
        if self.gan_phase(step):
            return super().phases(step)
        return [Phase("R", ("R",), self.r_loss)]

    def reverse(self, x: torch.Tensor, iterations: int = 1) -> list[torch.Tensor]:
        """[x, G(R(x)), G(R(G(R(x)))), ...] for images x in [0, 1]."""
        chain = [x]
        for _ in range(iterations):
            chain.append(self.to_unit_range(self.nets["G"](self.nets["R"](chain[-1]), from_prior=True).float()))
        return chain

    def default_iterations(self) -> int:
        return 1

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, lis_steps: Any = None,
               iterations: int | None = None, **options: Any) -> torch.Tensor:
        if options:
            raise GenfwError(f"{type(self).__name__}.sample got unknown options: {', '.join(sorted(options))}")
        it = self.default_iterations() if iterations is None else int(iterations)
        z = self.sample_latent(n, generator)
        with eval_mode(*self.nets.values()):
            if lis_steps == "all":
                return self.lis_strip(z)
            return self.reverse(self._generate(z, lis_steps), it)[-1]

    def visualize(self, batch: dict, n: int) -> dict[str, torch.Tensor]:
        z = self.sample_latent(n)
        with eval_mode(*self.nets.values()):
            chain = self.reverse(self._generate(z), self.default_iterations())
        # G(z) | G(R(G(z))) | ...: the paper's before/after figures
        return {"samples": chain[-1], "chain": torch.cat(chain, dim=-1)}


# --- R-iterative -------------------------------------------------------------------------------
@define(kw_only=True)
class RIterativeConfig(RSeparateConfig):
    reverser: dict = field(factory=lambda: {"type": "lis.reverser", "dropout": 0.0})
    iterations: int = field(default=3, validator=v.ge(1))    # I: R/G round trips per batch
    lam_r: float = field(default=0.9, validator=[v.ge(0.0), v.le(1.0)])  # R's MSE weight base
    always_train_all: bool = False   # train every iteration (else the paper's random schedule)


class RIterative(RSeparate):
    """G, D and R trained jointly; per batch x_0 = G(z), z_{j} = R(x_{j-1}), x_j = G(z_j), j = 1..I.

    Iteration j is trained with probability (j+1)/(I+1), always once an earlier one was, and always
    the last (so at least one); a trained iteration runs phases G_j, R_j (j >= 1), D_j in that order
    with R_j's loss lam^j * MSE(R(x_{j-1}), z_0) + (1 - lam^j) * BCE(D(G(R(x_{j-1}))), 1)
    (the reference's weighting: the first round trip already carries the adversarial term).
    """

    def __init__(self, cfg=None) -> None:
        super().__init__(cfg or RIterativeConfig())
        self._plan: tuple[int, int] | None = None

    def gan_phase(self, step: int) -> bool:
        return False

    def first_trained(self, step: int) -> int:
        """Index of the first trained iteration of this step.

        Drawn from a stream keyed by the step alone, so DDP replicas agree on the phase list (their
        gradient all-reduce must match) and a resumed run repeats the same plan.
        """
        if self._plan is None or self._plan[0] != step:
            I = self.cfg.iterations
            first = 0
            if not self.cfg.always_train_all:
                rng = random.Random(0x5EED + 7919 * step)
                for j in range(I + 1):
                    if j == I or rng.random() <= (j + 1) / (I + 1):
                        first = j
                        break
            self._plan = (step, first)
        return self._plan[1]

    def prepare(self, batch: dict, step: int) -> dict:
        self.load_init()
        self.seed_stacks(step)
        real = self.to_model_range(batch["image"])
        z0 = self.sample_latent(real.shape[0])
        g, r = self.nets["G"], self.nets["R"]
        x_prev = None
        with torch.no_grad():  # the untrained leading iterations only produce the next input
            for j in range(self.first_trained(step)):
                x_prev = g(z0 if j == 0 else r(x_prev), from_prior=True)
        drain_aux_losses(g)
        first = self.first_trained(step)
        return {"batch": batch, "real": real, "z0": z0, "x": {} if x_prev is None else {first - 1: x_prev},
                "first": first}

    def _prev(self, state: dict, j: int) -> torch.Tensor:
        return state["x"][j - 1]

    def _g_phase(self, j: int):
        def loss(state: dict) -> dict:
            if j == 0:
                code = state["z0"]
            else:
                with torch.no_grad():
                    code = self.nets["R"](self._prev(state, j).detach())
            fake = self.nets["G"](code, from_prior=True)
            state["x"][j] = fake
            return {"loss": self.loss_fn.g(self.nets["D"](fake), self._real_scores(state))}
        return loss

    def _real_scores(self, state: dict):
        """D's detached scores of the real batch for relativistic losses (None for the others)."""
        if not getattr(self.loss_fn, "relativistic", False):
            return None
        return self.nets["D"](state["real"]).detach()

    def _r_phase(self, j: int):
        def loss(state: dict) -> dict:
            code = self.nets["R"](self._prev(state, j).detach())
            lar = self.cfg.lam_r ** j
            mse = F.mse_loss(code, state["z0"])
            adv = self.loss_fn.g(self.nets["D"](self.nets["G"](code, from_prior=True)), self._real_scores(state))
            drain_aux_losses(self.nets["G"])  # G is not updated here; its L_sim belongs to G phases
            return {"loss": lar * mse + (1 - lar) * adv, "mse": mse, "adv": adv}
        return loss

    def _d_phase(self, j: int):
        def loss(state: dict) -> dict:
            d = self.nets["D"]
            real_s, fake_s = d(state["real"]), d(state["x"][j].detach())
            return {"loss": self.loss_fn.d(real_s, fake_s), "real_score": real_s.mean(),
                    "fake_score": fake_s.mean()}
        return loss

    def phases(self, step: int) -> list[Phase]:
        out: list[Phase] = []
        for j in range(self.first_trained(step), self.cfg.iterations + 1):
            out.append(Phase(f"G{j}", ("G",), self._g_phase(j)))
            if j >= 1:
                out.append(Phase(f"R{j}", ("R",), self._r_phase(j)))
            out.append(Phase(f"D{j}", ("D",), self._d_phase(j)))
        return out

    def end_step(self, state: dict, step: int) -> dict[str, float]:
        return {**super().end_step(state, step), "riter/first_trained": float(state.get("first", 0))}

    def default_iterations(self) -> int:
        return self.cfg.iterations


def register(registry) -> None:
    tiny = {"generator": {"type": "lis.generator", "generator": {"type": "lis.dcgan-generator", "width": 4,
                                                                 "latent_dim": 8}, "lis": {"k": 2}},
            "discriminator": {"type": "lis.dcgan-discriminator", "width": 4}}
    tiny_r = {**tiny, "generator": {"type": "lis.dcgan-generator", "width": 4, "latent_dim": 8},
              "reverser": {"type": "lis.reverser", "width": 4}}
    registry.register("algorithm", "glis", GLIS, config=GLISConfig, tiny=tiny,
                      help="G-LIS: BCE GAN whose generator has LIS modules (similarity loss joins G's loss)")
    registry.register("algorithm", "r-separate", RSeparate, config=RSeparateConfig, tiny=tiny_r,
                      help="R-separate: reverser trained after (or on a loaded) G/D; samples G(R(G(z)))")
    registry.register("algorithm", "r-iterative", RIterative, config=RIterativeConfig,
                      tiny={**tiny_r, "generator": tiny["generator"]},
                      help="R-iterative: G, D and R trained jointly over I round trips per batch")
