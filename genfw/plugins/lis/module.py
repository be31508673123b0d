"""The LIS stack (learned input space) and a wrapper that puts it in front of any latent generator."""
from __future__ import annotations

from typing import Any, Mapping

import attrs
import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

from genfw import AuxLoss, ConfigError
from genfw.plugins.lis.layers import TPReLU, WNLinear


class LISBlock(nn.Module):
    """One module: z' = z + FC2(TPReLU(FC1(z))), both FCs weight-normalised (reference code).

    The forward is the same function rewritten for few kernels (LIS must stay near-free, and at
    batch 32 it is launch-bound on a GPU): with u = FC1(z) - b,
    z' = z + FC2(PReLU(u; a) + b) = (z + W2 b) + PReLU(u; a) W2^T, i.e. one addmm, one prelu and
    one addmm; under no_grad the normalised weights and folded biases are cached.
    """

    def __init__(self, dim: int, second_wn: bool = True, gain: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.fc1 = WNLinear(dim, dim, gain=gain, bias=bias)
        self.act = TPReLU(dim)
        # the paper's table lists WN only on the first FC; the reference code normalises both
        self.fc2 = WNLinear(dim, dim, gain=gain, bias=bias) if second_wn else nn.Linear(dim, dim)
        self._cache: tuple | None = None

    def _fold(self) -> tuple[torch.Tensor, ...]:
        w1 = self.fc1.normalized_weight()
        w2 = self.fc2.normalized_weight() if isinstance(self.fc2, WNLinear) else self.fc2.weight
        b = self.act.threshold
        bias1 = -b if self.fc1.bias is None else self.fc1.bias - b
        c = F.linear(b, w2, self.fc2.bias)  # W2 b (+ FC2's bias)
        return w1, bias1, self.act.slope(), w2, c

    def folded(self) -> tuple[torch.Tensor, ...]:
        if torch.is_grad_enabled():
            self._cache = None
            return self._fold()
        key = tuple((p._version, p.data_ptr()) for p in self.parameters())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._fold())
        return self._cache[1]

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w1, bias1, a, w2, c = self.folded()
        h = F.prelu(F.linear(z, w1, bias1), a)
        if z.ndim == 2:
            return torch.addmm(z + c, h, w2.t())
        return z + c + F.linear(h, w2)

    def reference_forward(self, z: torch.Tensor) -> torch.Tensor:
        """The module written as in the paper (for tests and the benchmark's naive baseline)."""
        return z + self.fc2(self.act(self.fc1(z)))


class LISStack(AuxLoss, nn.Module):
    """K LIS modules with similarity loss sum_k lam^k MSE(z_k, z_0) and random early stop.

    Training: before module k (0-based) the whole batch stops with probability (1/2)^(K-k), drawn
    from `self.rng` (a torch.Generator) or, when None, the global torch RNG so seeded runs repeat.
    Evaluation: every module runs. `forward(z, steps=k)` runs exactly k modules.
    """

    def __init__(self, latent_dim: int = 256, k: int = 3, lam: float = 0.9, early_stop: bool = True,
                 second_wn: bool = True, loss_name: str = "lis_sim") -> None:
        super().__init__()
        self.latent_dim, self.k, self.lam = latent_dim, k, lam
        self.early_stop = early_stop
        self.loss_name = loss_name
        self.blocks = nn.ModuleList(LISBlock(latent_dim, second_wn) for _ in range(k))
        self.rng: torch.Generator | None = None
        self.steps_override: int | str | None = None  # set by genfw.core.adapters.transform_steps (sampling)
        self._last: dict[str, Any] = {}
        self._weights: dict[tuple, torch.Tensor] = {}

    @property
    def num_steps(self) -> int:
        """K: a latent transform with steps exposes how many (`genfw sample --lis-steps`)."""
        return self.k

    def stop_probability(self, k: int) -> float:
        """P(stop before module k | module k reached), training only."""
        return 0.5 ** (self.k - k)

    def _executed(self, steps) -> int:
        if steps is None and self.steps_override is not None:
            steps = self.steps_override
        if steps is not None and steps != "all":
            steps = int(steps)
            if not 0 <= steps <= self.k:
                raise ValueError(f"lis steps must be in 0..{self.k} or 'all', got {steps}")
            return steps
        if steps == "all" or not self.training or not self.early_stop or self.k == 0:
            return self.k
        # one draw per module in one call: no per-sample Python, cheap enough to be "free"
        u = torch.rand(self.k, generator=self.rng).tolist()
        for i, x in enumerate(u):
            if x < self.stop_probability(i):
                return i
        return self.k

    def forward(self, z: torch.Tensor, steps: int | str | None = None,
                return_all: bool = False) -> torch.Tensor | list[torch.Tensor]:
        n = self._executed(steps)
        zs = [z]
        for block in self.blocks[:n]:
            zs.append(block(zs[-1]))
        self._last = {"z0": z.detach(), "zk": zs[-1].detach(), "mse": []}
        if n and torch.is_grad_enabled():
            loss, mses = self.similarity_loss(zs)
            self._last["mse"] = mses.detach()
            if self.lam != 0:
                self.add_aux_loss(self.loss_name, loss)
        return zs if return_all else zs[-1]

    def similarity_loss(self, zs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_k lam^k MSE(z_k, z_0), [MSE(z_k, z_0) for k = 1..]) for zs = [z_0, z_1, ...]."""
        n = len(zs) - 1
        # one stacked reduction instead of K separate MSEs: fewer kernels on the hot path
        mses = (torch.stack(zs[1:]) - zs[0]).float().square().flatten(1).mean(1)
        key = (n, mses.device, self.lam)
        weights = self._weights.get(key)
        if weights is None:  # cached: a fresh host->device copy per step would stall the stream
            weights = self._weights[key] = torch.tensor([self.lam ** (i + 1) for i in range(n)], device=mses.device)
        return torch.dot(mses, weights), mses

    def stats(self) -> dict[str, float]:
        """mean/std of z_K and per-module MSE(z_k, z_0) of the last forward (for logging)."""
        if not self._last:
            return {}
        zk = self._last["zk"].float()
        out = {"z_mean": float(zk.mean()), "z_std": float(zk.std()) if zk.numel() > 1 else 0.0}
        for i, m in enumerate(self._last["mse"].tolist() if len(self._last["mse"]) else []):
            out[f"mse_{i + 1}"] = float(m)
        return out


class LISGenerator(nn.Module):
    """Any registered latent generator with a LIS stack in front of its prior noise.

    The stack acts only when called with from_prior=True (encoder latents pass straight through);
    its similarity loss reaches whichever phase updates this network via AuxLoss.
    """

    roles = ("latent-generator",)

    def __init__(self, generator: nn.Module, lis: LISStack) -> None:
        super().__init__()
        self.generator = generator
        self.lis = lis
        self.latent_dim = int(generator.latent_dim)
        for name in ("output_range", "image_size", "channels"):  # traits of the wrapped generator
            if hasattr(generator, name):
                setattr(self, name, getattr(generator, name))

    def forward(self, z: torch.Tensor, from_prior: bool = True, lis_steps: int | str | None = None,
                **kw: Any) -> Any:
        if from_prior:
            z = self.lis(z, steps=lis_steps)
        return self.generator(z, from_prior=from_prior, **kw)


# --- registry configs -------------------------------------------------------------------------
@define(kw_only=True)
class LISModuleConfig:
    latent_dim: int = field(default=256, validator=v.gt(0))    # d
    k: int = field(default=3, validator=v.ge(0))               # number of modules K
    lam: float = field(default=0.9, validator=v.ge(0.0))       # similarity weight base lambda
    early_stop: bool = True                                    # random batch-wise early stop in training
    second_wn: bool = True                                     # WN on FC2 too (reference); False: plain Linear


PASS_THROUGH = ("image_size", "channels", "in_channels", "out_channels")


@define(kw_only=True)
class LISGeneratorConfig:
    generator: dict = field(factory=lambda: {"type": "lis.dcgan-generator"})  # any latent generator spec
    lis: dict = field(factory=dict)   # lis.module options (k, lam, ...); latent_dim comes from the generator
    # Defaults an algorithm hands to "its generator" are forwarded to the wrapped one (its own keys
    # win), so swapping in the wrapper by config keeps the data's size/channels; 0 = not given.
    image_size: int = field(default=0, validator=v.ge(0))
    channels: Any = 0
    in_channels: int = field(default=0, validator=v.ge(0))
    out_channels: int = field(default=0, validator=v.ge(0))


def fill_zeros(spec: Mapping[str, Any], registry, values: Mapping[str, int]) -> dict:
    """Copy of a component spec whose int fields that are absent or 0 take `values` (the data's
    size, channels, ...), recursing into nested specs.

    0 is this plugin's "from the data"; filling explicitly (rather than relying on build defaults)
    reaches generators wrapped at any depth. Only int-valued fields are filled, so e.g. a list of channel widths is left alone.
    """
    out = dict(spec)
    entry = registry.get(str(out["type"]))
    ints = set()
    if entry.config is not None:
        ints = {f.name for f in attrs.fields(entry.config)
                if isinstance(f.default, int) and not isinstance(f.default, bool)}
    for key, val in values.items():
        if key in ints and val and not out.get(key):
            out[key] = val
    for key, sub in out.items():
        if isinstance(sub, Mapping) and isinstance(sub.get("type"), str) and sub["type"] in registry:
            out[key] = fill_zeros(sub, registry, values)
    return out


def build_stack(cfg: LISModuleConfig) -> LISStack:
    return LISStack(cfg.latent_dim, cfg.k, cfg.lam, cfg.early_stop, cfg.second_wn)


def build_generator(cfg: LISGeneratorConfig, registry=None) -> LISGenerator:
    if registry is None:
        from genfw import get_registry

        registry = get_registry()
    given = {k: getattr(cfg, k) for k in PASS_THROUGH if isinstance(getattr(cfg, k), int) and getattr(cfg, k)}
    spec = fill_zeros(cfg.generator, registry, given) if given else dict(cfg.generator)
    gen = registry.build(spec, kind="generator", defaults=given, path="lis.generator.generator")
    if not isinstance(getattr(gen, "latent_dim", None), int):
        raise ConfigError(
            f"lis.generator: {cfg.generator.get('type')!r} has no int attribute latent_dim; LIS needs a "
            "generator that takes a latent vector"
        )
    spec: Mapping[str, Any] = dict(cfg.lis)
    spec = {"type": "lis.module", **spec} if "type" not in spec else spec
    if "latent_dim" in spec and int(spec["latent_dim"]) != gen.latent_dim:
        raise ConfigError(
            f"lis.generator: lis.latent_dim = {spec['latent_dim']} but the generator's latent_dim is "
            f"{gen.latent_dim}; leave lis.latent_dim out"
        )
    lis = registry.build(spec, kind="layer", defaults={"latent_dim": gen.latent_dim}, path="lis.generator.lis")
    return LISGenerator(gen, lis)


def find_stacks(*modules: nn.Module) -> list[LISStack]:
    return [m for net in modules for m in net.modules() if isinstance(m, LISStack)]


def register(registry) -> None:
    registry.register("layer", "module", build_stack, config=LISModuleConfig, roles=("latent-transform",),
                      help="LIS stack: K residual WN-FC modules with similarity loss and early stop",
                      example=lambda m: (torch.randn(4, m.latent_dim),), tiny={"latent_dim": 8, "k": 2})
    registry.register("generator", "generator", build_generator, config=LISGeneratorConfig,
                      roles=("latent-generator",),
                      help="LIS stack in front of any latent generator (acts on from_prior=True noise)",
                      example=lambda m: (torch.randn(2, m.latent_dim),),
                      tiny={"generator": {"type": "lis.dcgan-generator", "image_size": 10, "width": 4,
                                          "latent_dim": 8},
                            "lis": {"k": 2}})
