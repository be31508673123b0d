"""The coherent semantic attention (CSA) layer: search, then sequential generate over hole positions.

Shapes: features N x C x H x W, mask N x 1 x H x W at feature resolution (1 = hole). Patches are 1x1
(one feature vector per position), as in the reference code.

Search, per sample: one pass over the map copies it into the output and gathers the hole and the
known features as position-major rows (the map is read once: cold, it costs more than the
arithmetic), one matrix product gives every <f_i, k_j>, and the C kernel takes the arg-max of
<f_i, k_j> / |k_j| per hole (the key norms scale the L x K scores, not the features). Where the
CPU runs bf16 products fast (AMX, or this process's probe says so) the product runs in bf16 and
is then made exact: bf16 rounding moves every key's score for a hole by at most the same bound
(3 * 2^-8 |f_i|), so only the keys scoring within twice that of the best can be fp32's arg-max,
and those few are scored again in fp32 (`recurrence.bf16_search`, `csa_refine_f32`; the same
index as the fp32 search, tested). Only the index is kept: Dmax is recomputed from the two
chosen vectors, so its gradient is exact and cheap.
Generate is the paper's recurrence over the sample's holes in raster order, in the same kernel
(`recurrence.Fill`, with a hand-written backward; torch ops where no compiler is available): a step
is two dot products, so per-op dispatch, not arithmetic, is what a loop of torch ops would spend
its time on. The kernel reads the chosen key rows in place and writes the patches straight into
the output. One sample at a time, so its map is still in cache for the kernel; a batch of maps is
not.

Numerical safety: both similarities are clamped at 0 and Dmax gets +eps before the ratio
``Dad / (Dad + Dmax)``. Negative similarities would otherwise let the denominator approach 0 and
the mixing weights explode (the reference code's failure mode); with the clamp both weights lie in
[0, 1] and sum to 1, so every generated patch is a convex combination of known patches.
"""
from __future__ import annotations

import attrs
import torch
from attrs import define, field, validators as v
from torch import nn

from genfw.plugins.csa.recurrence import TINY as _TINY, Fill, Generate, hole_order, intra_op_threads, usable

SIMILARITIES = ("cosine", "key-only")


@define(kw_only=True)
class CSAConfig:
    # cosine: both vectors normalised (the paper); key-only: only the key side is normalised,
    # Dmax = <m, k/|k|>, Dad = <prev, m/|m|> (the reference code)
    similarity: str = field(default="cosine", validator=v.in_(SIMILARITIES))
    eps: float = field(default=1e-8, validator=v.gt(0.0))  # added to Dmax: keeps the ratio defined
    # intra-op threads inside the layer (0: the process's setting). The layer is a handful of ops per
    # sample, the search GEMM the only big one, so the process's setting suits it; 1 keeps a busy
    # machine's thread-pool waits out of it at the cost of the GEMM's parallel speed-up
    threads: int = field(default=0, validator=v.ge(0))


def _sumsq(t: torch.Tensor) -> torch.Tensor:
    # over the channel dim of N x C x L; much faster than vector_norm's strided reduction here
    return (t * t).sum(1)


def _generate_torch(x, f, best, hidx, valid, offsets, similarity: str, eps: float):
    """Everything after the search in torch ops (no C kernel here): gathers, Dmax, the
    recurrence (`recurrence.Generate`) and one scatter of the patches into a copy of x."""
    n, c, h, w = x.shape
    steps = hidx.shape[1]
    x3 = x.reshape(n, c, h * w)
    k = torch.gather(x3, 2, best.unsqueeze(1).expand(-1, c, -1))  # N x C x L best known patches
    fh = f / _sumsq(f).sqrt().clamp_min(_TINY).unsqueeze(1)
    q = fh if similarity == "cosine" else f
    # Dmax again from the two chosen vectors: exact gradient without back-propagating the search
    dmax = (q * k).sum(1) / _sumsq(k).sqrt().clamp_min(_TINY)
    padded = not bool(valid.all())

    def rows(t):  # N x C x L -> V x C, one row per real hole
        t = t.transpose(1, 2)
        return t[valid] if padded else t.reshape(-1, c)

    gen, mixing = Generate.apply(rows(fh), rows(k), (dmax[valid] if padded else dmax.reshape(-1)).clamp_min(0) + eps,
                                 offsets, similarity == "cosine")
    if padded:  # padded steps point at known positions: they write the original feature back
        gen = f.transpose(1, 2).masked_scatter(valid.unsqueeze(-1), gen)
    out = x.clone()  # keeps x's memory format
    out.view(n, c, h * w).scatter_(2, hidx.unsqueeze(1).expand(-1, c, -1), gen.view(n, steps, c).transpose(1, 2))
    return out, mixing


def coherent_attention(x: torch.Tensor, mask: torch.Tensor, similarity: str = "cosine",
                       eps: float = 1e-8, return_attention: bool = False, use_kernel: bool = True,
                       threads: int = 0):
    """The CSA layer as a function; see the module docstring. Returns features (and attention).

    Works on x's own memory layout (contiguous or channels_last; the output keeps it).
    use_kernel=False runs the recurrence as torch ops even where the C kernel is available;
    threads: intra-op threads for the layer (0: the process's setting; see CSAConfig)."""
    with intra_op_threads(threads):
        return _coherent_attention(x, mask, similarity, eps, return_attention, use_kernel, threads)


def _coherent_attention(x, mask, similarity, eps, return_attention, use_kernel, threads):
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    n, c, h, w = x.shape
    if mask.shape[0] != n or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"CSA mask {tuple(mask.shape)} must be N x 1 x {h} x {w} to match features {tuple(x.shape)}")
    hw = h * w
    lib = usable(x) if use_kernel else None
    if lib is not None:  # each sample's holes, then its known positions, both in raster order
        order, counts = hole_order(lib, mask, scratch=True)
    else:
        hole = mask.reshape(n, hw) > 0.5
        counts = hole.sum(1).tolist()
    # a sample with no known position has nothing to copy from: it passes through unchanged
    lens = [cnt if 0 < cnt < hw else 0 for cnt in counts]
    offsets = [0]
    for ln in lens:
        offsets.append(offsets[-1] + ln)
    out, mixing, best, hidx = x, None, None, None
    if offsets[-1] and lib is not None:
        # no gradient to track: the kernel directly, without autograd's per-call bookkeeping
        fill = Fill.apply if torch.is_grad_enabled() and x.requires_grad else Fill.run
        out, mixing, best, hidx = fill(x, order, counts, lens, similarity == "cosine", eps, threads)
    elif offsets[-1]:
        # the same order by a stable sort
        order = torch.sort((~hole).to(torch.uint8), dim=1, stable=True).indices
        out, mixing, best, hidx = _search_generate_torch(x, hole, torch.tensor(counts, device=x.device),
                                                         torch.tensor(lens, device=x.device),
                                                         order[:, :max(lens)], offsets, similarity, eps)
    if not return_attention:
        return out
    return out, _attention(x, offsets, mixing, best, hidx)


def _search_generate_torch(x, hole, counts, lens, hidx, offsets, similarity, eps):
    """The torch-op path (no C kernel): the batched search, then `_generate_torch`."""
    n, c, h, w = x.shape
    hw, steps, width = h * w, hidx.shape[1], int((h * w - counts).max())
    kidx = torch.sort(hole.to(torch.uint8), dim=1, stable=True).indices[:, :width]  # known positions
    x3 = x.reshape(n, c, hw)  # a view in either layout
    valid = torch.arange(steps, device=x.device).unsqueeze(0) < lens.unsqueeze(1)  # N x L
    f = torch.gather(x3, 2, hidx.unsqueeze(1).expand(-1, c, -1))  # N x C x L hole features
    with torch.no_grad():
        # search: argmax over known k of <f, k> / |k| (for cosine also the argmax of the cosine,
        # |f| being one row's constant); hole features against known features only, the key norms
        # dividing the L x K scores rather than the features
        keys = torch.gather(x3, 2, kidx.unsqueeze(1).expand(-1, c, -1))  # N x C x K
        scores = torch.bmm(f.transpose(1, 2), keys)
        scores.div_(keys.square_().sum(1).sqrt_().clamp_min_(_TINY).unsqueeze(1))
        known = hw - counts
        if bool((known < width).any()):  # fewer known positions than the widest sample: padding loses
            pad = torch.arange(width, device=x.device).unsqueeze(0) >= known.unsqueeze(1)
            scores.masked_fill_(pad.unsqueeze(1), float("-inf"))
        best = kidx.gather(1, scores.argmax(-1))  # N x L positions
        del scores, keys
    out, mixing = _generate_torch(x, f, best, hidx, valid, offsets, similarity, eps)
    return out, mixing, best[valid], hidx[valid]


def _attention(x: torch.Tensor, offsets: list[int], mixing, best, holes) -> torch.Tensor:
    """N x HW x HW rows of the attention matrix (known positions attend to themselves): the
    paper's A_i = (1 - a_i) onehot(best_i) + a_i A_{i-1}, built only for `inpaint --attention`."""
    n, hw = x.shape[0], x.shape[2] * x.shape[3]
    with torch.no_grad():
        att = torch.eye(hw, dtype=x.dtype, device=x.device).repeat(n, 1, 1)
        for s in range(n):
            row = x.new_zeros(hw)
            for t in range(offsets[s], offsets[s + 1]):
                row = row * mixing[t]
                row[best[t]] += 1 - mixing[t]
                att[s, holes[t]] = row
    return att


class CSALayer(nn.Module):
    """Coherent semantic attention: fills hole features from known ones, coherently in raster order."""

    roles = ("feature-attention",)

    def __init__(self, cfg: CSAConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = attrs.evolve(cfg if cfg is not None else CSAConfig(), **overrides)
        self.similarity = cfg.similarity
        self.eps = cfg.eps
        self.threads = cfg.threads

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_attention: bool = False, **context):
        # the recurrence accumulates: keep it in fp32 even under bf16/fp16 autocast
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = x.dtype if x.dtype == torch.float64 else torch.float32
            return coherent_attention(x.to(dtype), mask.to(dtype), self.similarity, self.eps, return_attention,
                                      threads=self.threads)

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, eps={self.eps}, threads={self.threads}"


def layer_example(module: CSALayer):
    x = torch.rand(2, 4, 6, 5)
    mask = torch.zeros(2, 1, 6, 5)
    mask[0, :, 2:4, 1:4] = 1
    mask[1, :, 0:3, 0:2] = 1
    return (x, mask)
