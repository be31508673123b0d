"""Shared network helpers that are not paper-specific."""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class AuxLoss:
    """Mixin for modules that produce a loss as a side effect of forward (e.g. LIS similarity).

    Call ``self.add_aux_loss(name, value)`` in forward. The engine drains pending auxiliary losses
    of every network a phase updates and adds them to that phase's loss, so such a module trains
    wherever it is plugged in, without the surrounding algorithm knowing about it.
    """

    def add_aux_loss(self, name: str, value: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            return  # sampling / evaluation: nothing will be back-propagated
        pending = self.__dict__.setdefault("_aux_pending", [])
        pending.append((name, value))


def drain_aux_losses(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Pop every pending auxiliary loss inside `module` (any depth)."""
    out: list[tuple[str, torch.Tensor]] = []
    for m in module.modules():
        pending = m.__dict__.get("_aux_pending")
        if pending:
            out.extend(pending)
            pending.clear()
    return out


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d that computes small feature maps on CPU as one matrix product over gathered patches.

    At the bottom of an encoder or the top of a decoder a 3x3 convolution sees 4x4 or 8x8 maps with
    512 channels: a handful of output pixels against a 2.4 M-weight kernel. The CPU's convolution
    library then spends its time re-laying out the kernel on every call (forward, input gradient and
    weight gradient each), not computing: on a 2-core Xeon such a layer's forward + backward at
    batch 2 measured 7.6 ms in bf16, 3.6 ms as the product below (9.5 vs 4.4 ms in fp32). The
    product is the convolution itself, not an approximation: stack the kh*kw shifted copies of the
    zero-padded map along channels (im2col, done with strided views of the channels-last layout) and
    multiply once by the kernel viewed as (out, kh*kw*in) or (out, in*kh*kw), whichever its memory
    order is (a contiguous weight's matched order measured 5-15 % faster than a per-call copy at
    4x4 / 8x8 maps on a 2-core AMD EPYC, fp32). Maps above `small_map` pixels, other
    devices and strided / dilated / grouped layers take the library path (16x16 maps measured no
    faster as a product). Same parameters and state_dict as nn.Conv2d.
    """

    small_map = 64  # largest H * W computed as a product (measured: 8x8 wins, 16x16 does not)

    def _as_product(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dim() == 4 and x.shape[-2] * x.shape[-1] <= self.small_map
                and self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and not isinstance(self.padding, str))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._as_product(x):
            return super().forward(x)
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        ph, pw = self.padding
        oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        # (N, H+2p, W+2p, C): a free view when x is channels_last
        xp = torch.nn.functional.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)
        shifted = [xp[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)]
        # patches in the weight's own memory order, so the kernel matrix is a view, not a 2.4 M copy
        # per call (and its gradient none back): (kh, kw, in) for a channels_last weight, else (in, kh, kw)
        if self.weight.permute(0, 2, 3, 1).is_contiguous():
            cols, wm = torch.stack(shifted, dim=3), self.weight.permute(0, 2, 3, 1)
        else:
            cols, wm = torch.stack(shifted, dim=4), self.weight
        wm = wm.reshape(self.out_channels, kh * kw * c)
        y = torch.nn.functional.linear(cols.reshape(n * oh * ow, kh * kw * c), wm, self.bias)
        y = y.view(n, oh, ow, self.out_channels).permute(0, 3, 1, 2)  # channels_last strides
        return y if x.is_contiguous(memory_format=torch.channels_last) else y.contiguous()


class _PerChunkBatchNorm(torch.autograd.Function):
    """Training-mode batch norm with separate statistics for each of k equal batch chunks.

    Each chunk is normalised by the library kernel writing straight into its slice of one output
    (and, backward, of one input gradient): no concatenation, no zero-padded slice gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, factors, eps):
        k = len(factors)
        n = x.shape[0] // k
        out = torch.empty_like(x)
        stats = []
        acc = _stats_dtype(x.dtype, weight.dtype if weight is not None else None)
        for i, factor in enumerate(factors):
            mean = torch.empty(x.shape[1], device=x.device, dtype=acc)
            invstd = torch.empty_like(mean)
            torch.ops.aten.native_batch_norm.out(x[i * n:(i + 1) * n], weight, bias, running_mean, running_var, True,
                                                 factor, eps, out=out[i * n:(i + 1) * n], save_mean=mean,
                                                 save_invstd=invstd)
            stats += [mean, invstd]
        ctx.save_for_backward(x, weight, *stats)
        ctx.k, ctx.eps = k, eps
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, weight, *stats = ctx.saved_tensors
        k, n = ctx.k, x.shape[0] // ctx.k
        # all three gradients every time: dweight and dbias are the sums the input gradient needs
        # anyway, and out= variants reject unrequested (undefined) outputs under dispatch modes
        gx = torch.empty_like(x)
        gw = gb = None
        for i in range(k):
            sl = slice(i * n, (i + 1) * n)
            ow = torch.empty(x.shape[1], device=x.device, dtype=weight.dtype if weight is not None else stats[0].dtype)
            ob = torch.empty_like(ow)
            # running stats unused: the saved batch statistics are given
            torch.ops.aten.native_batch_norm_backward.out(
                gy[sl].contiguous(memory_format=_format_of(x)), x[sl], weight, None, None, stats[2 * i],
                stats[2 * i + 1], True, ctx.eps, [True, True, True], out0=gx[sl], out1=ow, out2=ob)
            gw = ow if gw is None else gw + ow
            gb = ob if gb is None else gb + ob
        need = ctx.needs_input_grad
        return gx if need[0] else None, gw if need[1] else None, gb if need[2] else None, None, None, None, None


_STATS_DTYPE: dict = {}


def _stats_dtype(x_dtype: torch.dtype, w_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype batch norm's kernel keeps its saved statistics in (it depends on input and
    parameter dtypes: bf16 inputs with fp32 parameters keep fp32), asked of the kernel once."""
    key = (x_dtype, w_dtype)
    if key not in _STATS_DTYPE:
        w = None if w_dtype is None else torch.ones(1, dtype=w_dtype)
        _, mean, _ = torch.native_batch_norm(torch.zeros(2, 1, 1, 1, dtype=x_dtype), w, None if w is None else
                                             torch.zeros(1, dtype=w_dtype), None, None, True, 0.0, 1e-5)
        _STATS_DTYPE[key] = mean.dtype
    return _STATS_DTYPE[key]


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format


class ChunkedBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d that can normalise k equal batch chunks with separate statistics.

    Running k same-sized passes through a network as one batch (more work per call, fewer calls)
    changes nothing except batch norm, which would then pool statistics over all passes. With
    ``chunks = k`` set (see `batch_chunks`), each chunk gets its own batch statistics and the
    running averages are updated chunk by chunk in order, exactly as k separate passes would.
    Same parameters, buffers and state_dict as nn.BatchNorm2d; ``chunks = 1`` is nn.BatchNorm2d.
    """

    chunks = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.chunks
        batch_stats = self.training or self.running_mean is None
        if k == 1 or not batch_stats:
            return super().forward(x)
        self._check_input_dim(x)
        if x.shape[0] % k:
            raise ValueError(f"ChunkedBatchNorm2d: batch {x.shape[0]} does not split into {k} equal chunks")
        track = self.training and self.track_running_stats
        factors = []
        for _ in range(k):  # what k separate training passes would do to the running averages
            if track:
                self.num_batches_tracked.add_(1)
            # without tracking no running averages are passed and the factor is unused
            cumulative = track and self.momentum is None
            factors.append(1.0 / float(self.num_batches_tracked) if cumulative else (self.momentum or 0.0))
        return _PerChunkBatchNorm.apply(x, self.weight, self.bias, self.running_mean if track else None,
                                        self.running_var if track else None, tuple(factors), self.eps)


def batch_chunks_exact(net: nn.Module) -> bool:
    """Whether k same-sized passes through `net` may run as one batch under `batch_chunks`: the
    net declares ``batch_chunks_exact = True`` (every op but batch norm is per-sample) and all of
    its batch norms are ChunkedBatchNorm2d."""
    return bool(getattr(net, "batch_chunks_exact", False)) and all(
        isinstance(m, ChunkedBatchNorm2d) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@contextlib.contextmanager
def batch_chunks(net: nn.Module, k: int):
    """Inside, every ChunkedBatchNorm2d of `net` treats its batch as k chunks (k separate passes)."""
    mods = [m for m in net.modules() if isinstance(m, ChunkedBatchNorm2d)]
    saved = [m.chunks for m in mods]
    try:
        for m in mods:
            m.chunks = k
        yield
    finally:
        for m, c in zip(mods, saved):
            m.chunks = c
