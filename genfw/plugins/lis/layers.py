"""Weight-normalised layers (Xiang & Li 2017 variant used by LIS) and TPReLU.

WN here divides by the weight norm *without* a learned magnitude unless `gain` is on
("affine WN" adds gain and bias). The normalised weight is formed once per forward (one
reduction, one rsqrt, one multiply with the optional gain folded in) so the matmul/conv itself
runs at full speed; under no_grad it is cached until the parameters change.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attrs import define, field, validators as v
from torch import nn

EPS = 1e-6


def wn_weight(weight: torch.Tensor, dims: tuple[int, ...], out_dim: int, divisor: float = 1.0,
              gain: torch.Tensor | None = None) -> torch.Tensor:
    """weight / sqrt(sum_dims weight^2 / divisor + eps), times an optional per-output gain."""
    sq = weight.square().sum(dims, keepdim=True)
    if divisor != 1.0:
        sq = sq / divisor
    scale = torch.rsqrt(sq + EPS)
    if gain is not None:
        shape = [1] * weight.ndim
        shape[out_dim] = -1
        scale = scale * gain.view(shape)
    return weight * scale


class _WN(nn.Module):
    """Shared parameters and caching of the weight-normalised layers."""

    _dims: tuple[int, ...] = (1,)
    _out_dim = 0

    def _init_wn(self, shape: tuple[int, ...], out_features: int, fan_in: int, gain: bool, bias: bool,
                 init_scale: float) -> None:
        bound = init_scale / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.gain = nn.Parameter(torch.ones(out_features)) if gain else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._cache: tuple | None = None

    def _divisor(self) -> float:
        return 1.0

    def normalized_weight(self) -> torch.Tensor:
        if torch.is_grad_enabled():
            self._cache = None
            return wn_weight(self.weight, self._dims, self._out_dim, self._divisor(), self.gain)
        # sampling: the weights only change through an optimizer step, which bumps _version
        key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype,
               None if self.gain is None else (self.gain._version, self.gain.data_ptr()))
        if self._cache is None or self._cache[0] != key:
            w = wn_weight(self.weight, self._dims, self._out_dim, self._divisor(), self.gain)
            self._cache = (key, w)
        return self._cache[1]

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # .to()/.half() replace the tensors
        return super()._apply(fn, *args, **kwargs)


class WNLinear(_WN):
    """y = x W^T / sqrt(sum_in W^2 + 1e-6) per output unit (optional gain, bias)."""

    _dims = (1,)
    _out_dim = 0

    def __init__(self, in_features: int, out_features: int, gain: bool = False, bias: bool = False,
                 init_scale: float = 0.01) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_wn((out_features, in_features), out_features, in_features, gain, bias, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, gain={self.gain is not None}, bias={self.bias is not None}"


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else tuple(x)


class WNConv2d(_WN):
    """Conv2d whose kernel is normalised per output channel over (in, kh, kw)."""

    _dims = (1, 2, 3)
    _out_dim = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size=4, stride=1, padding=0,
                 gain: bool = False, bias: bool = False, init_scale: float = 0.01) -> None:
        super().__init__()
        k = _pair(kernel_size)
        self.stride, self.padding, self.kernel_size = _pair(stride), _pair(padding), k
        self.in_channels, self.out_channels = in_channels, out_channels
        self._init_wn((out_channels, in_channels, *k), out_channels, in_channels * k[0] * k[1], gain,
                      bias, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, gain={self.gain is not None}")


class WNConvTranspose2d(_WN):
    """Transposed conv, normalised per output channel over (in, kh, kw).

    The squared norm is divided by stride_h * stride_w: each output pixel of a strided transposed
    conv only meets 1/stride^2 of the kernel taps, so this keeps unit gain per output pixel.
    """

    _dims = (0, 2, 3)
    _out_dim = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size=4, stride=2, padding=1,
                 gain: bool = False, bias: bool = False, init_scale: float = 0.01) -> None:
        super().__init__()
        k = _pair(kernel_size)
        self.stride, self.padding, self.kernel_size = _pair(stride), _pair(padding), k
        self.in_channels, self.out_channels = in_channels, out_channels
        self._init_wn((in_channels, out_channels, *k), out_channels, in_channels * k[0] * k[1], gain,
                      bias, init_scale)

    def _divisor(self) -> float:
        return float(self.stride[0] * self.stride[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, gain={self.gain is not None}")


class TPReLU(nn.Module):
    """PReLU with a learned threshold: PReLU(x - b; a) + b, per channel (dim 1).

    The slope is clamped to [0, 1] in the forward with a straight-through gradient: a parameter
    that overshoots still receives gradient and can come back (a plain clamp would freeze it), and
    nothing is modified in place (in-place clamping breaks autograd when D runs twice per step).
    """

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))
        self.threshold = nn.Parameter(torch.zeros(channels))

    def slope(self) -> torch.Tensor:
        a = self.weight
        if not torch.is_grad_enabled():
            return a.clamp(0.0, 1.0)
        return a + (a.clamp(0.0, 1.0) - a).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.slope()
        shape = [1] * x.ndim
        shape[1] = -1
        b = self.threshold.view(shape)
        return F.prelu(x - b, a) + b

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}"


# --- registry configs ------------------------------------------------------------------------
def _pos(inst, attribute, value):
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@define(kw_only=True)
class WNLinearConfig:
    in_features: int = field(default=8, validator=_pos)
    out_features: int = field(default=8, validator=_pos)
    gain: bool = False          # "affine WN": learned per-unit scale
    bias: bool = False
    init_scale: float = field(default=0.01, validator=_pos)  # uniform(+-init_scale / sqrt(fan_in))


@define(kw_only=True)
class WNConvConfig:
    in_channels: int = field(default=3, validator=_pos)
    out_channels: int = field(default=8, validator=_pos)
    kernel_size: int = field(default=4, validator=_pos)
    stride: int = field(default=2, validator=_pos)
    padding: int = field(default=1, validator=v.ge(0))
    gain: bool = False
    bias: bool = False
    init_scale: float = field(default=0.01, validator=_pos)


@define(kw_only=True)
class TPReLUConfig:
    channels: int = field(default=8, validator=_pos)
    init: float = field(default=0.25, validator=[v.ge(0.0), v.le(1.0)])


def _conv_kwargs(cfg: WNConvConfig) -> dict:
    return dict(kernel_size=cfg.kernel_size, stride=cfg.stride, padding=cfg.padding, gain=cfg.gain,
                bias=cfg.bias, init_scale=cfg.init_scale)


def register(registry) -> None:
    registry.register(
        "layer", "wn-linear",
        lambda c: WNLinear(c.in_features, c.out_features, c.gain, c.bias, c.init_scale),
        config=WNLinearConfig, help="weight-normalised Linear (Xiang & Li), optional gain/bias",
        example=lambda m: (torch.randn(2, m.in_features),))
    registry.register(
        "layer", "wn-conv2d",
        lambda c: WNConv2d(c.in_channels, c.out_channels, **_conv_kwargs(c)),
        config=WNConvConfig, help="weight-normalised Conv2d (norm over in, kh, kw)",
        example=lambda m: (torch.randn(2, m.in_channels, 8, 8),))
    registry.register(
        "layer", "wn-conv-transpose2d",
        lambda c: WNConvTranspose2d(c.in_channels, c.out_channels, **_conv_kwargs(c)),
        config=WNConvConfig, help="weight-normalised ConvTranspose2d (squared norm / stride^2)",
        example=lambda m: (torch.randn(2, m.in_channels, 4, 4),))
    registry.register(
        "layer", "tprelu", lambda c: TPReLU(c.channels, c.init), config=TPReLUConfig,
        help="PReLU(x - b; a) + b with per-channel slope a in [0, 1] and threshold b",
        example=lambda m: (torch.randn(2, m.weight.numel(), 3, 3),))
