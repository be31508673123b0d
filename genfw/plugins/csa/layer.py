"""The coherent semantic attention (CSA) layer: search, then sequential generate over hole positions.

Shapes: features N x C x H x W, mask N x 1 x H x W at feature resolution (1 = hole). Patches are 1x1
(one feature vector per position), as in the reference code.

Search is one batched matrix product (hole queries against every position, hole columns masked
out); only the arg-max index is taken from it, and Dmax is recomputed from the two gathered vectors
so its gradient is exact and cheap. Generate is the paper's recurrence, visited in raster order,
vectorised across the batch (each sample with its own mask; padded steps are discarded), with a
hand-written backward (`_Generate`) because per-step autograd bookkeeping would dominate its cost.

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

SIMILARITIES = ("cosine", "key-only")
_TINY = 1e-12  # floor for vector norms (an all-zero feature vector has no direction)


@define(kw_only=True)
class CSAConfig:
    # cosine: both vectors normalised (the paper); key-only: only the key side is normalised,
    # Dmax = <m, k/|k|>, Dad = <prev, m/|m|> (the reference code)
    similarity: str = field(default="cosine", validator=v.in_(SIMILARITIES))
    eps: float = field(default=1e-8, validator=v.gt(0.0))  # added to Dmax: keeps the ratio defined


class _Generate(torch.autograd.Function):
    """m_t = a_t m_{t-1} + (1 - a_t) k_t with a_t = relu(Dad_t) / (relu(Dad_t) + e_t).

    Inputs are time-major: fh (L x N x C, unit hole features), k (L x N x C, the best known patch
    of each hole), e (L x N, clamped Dmax + eps). Dad_t = <m_{t-1}, fh_t> / |m_{t-1}| (cosine) or
    without the division (key-only); m_{-1} = 0, so Dad_0 = 0 and m_0 = k_0.
    Returns M (L x N x C) and the mixing weights a (L x N, not differentiable).
    The loops touch only per-step views made once (unbind) and collect scalars in lists: per-op
    dispatch cost, not arithmetic, is what a 512-channel step spends its time on.
    """

    @staticmethod
    def forward(ctx, fh, k, e, cosine: bool):
        steps, n, c = k.shape
        out = torch.empty_like(k)
        dads, norms = [], []
        m = k.new_zeros(n, c)
        for fh_t, k_t, e_t, out_t in zip(fh.unbind(0), k.unbind(0), e.unbind(0), out.unbind(0)):
            p = torch.linalg.vecdot(m, fh_t)
            if cosine:
                nr = torch.linalg.vector_norm(m, dim=-1).clamp_min_(_TINY)
                norms.append(nr)
                p = p.div_(nr)
            dads.append(p)
            d = p.clamp_min(0)
            m = torch.lerp(k_t, m, d.div_(d + e_t).unsqueeze_(-1), out=out_t)
        dad = torch.stack(dads)
        nrm = torch.stack(norms) if cosine else torch.ones_like(dad)
        d = dad.clamp_min(0)
        a = d / (d + e)
        ctx.save_for_backward(fh, k, e, out, dad, nrm, a)
        ctx.cosine = cosine
        ctx.mark_non_differentiable(a)
        return out, a

    @staticmethod
    def backward(ctx, g_out, _g_a):
        fh, k, e, out, dad, nrm, a = ctx.saved_tensors
        steps, n, c = k.shape
        prev = torch.cat([out.new_zeros(1, n, c), out[:-1]], 0)  # m_{t-1}
        s = dad.clamp_min(0) + e
        # da/dDad, zero where the clamp is active (Dad <= 0)
        coef = torch.where(dad > 0, e / (s * s), torch.zeros_like(e)).unsqueeze(-1)
        if ctx.cosine:
            unit_prev = prev / nrm.unsqueeze(-1)
            u = (fh - dad.unsqueeze(-1) * unit_prev) / nrm.unsqueeze(-1)  # dDad/dm_{t-1}
        else:
            unit_prev = prev
            u = fh
        uc = u * coef
        w = prev - k  # dm_t/da_t
        g_all = torch.empty_like(out)
        gas = []
        g = out.new_zeros(n, c)
        for go_t, gall_t, w_t, uc_t, a_t in zip(g_out.unbind(0)[::-1], g_all.unbind(0)[::-1], w.unbind(0)[::-1],
                                                uc.unbind(0)[::-1], a.unsqueeze(-1).unbind(0)[::-1]):
            gt = torch.add(go_t, g, out=gall_t)
            ga_t = torch.linalg.vecdot(gt, w_t).unsqueeze_(-1)
            gas.append(ga_t)
            g = torch.addcmul(gt * a_t, ga_t, uc_t)
        ga = torch.stack(gas[::-1])  # L x N x 1
        g_fh = ga * coef * unit_prev
        g_k = (1 - a).unsqueeze(-1) * g_all
        g_e = -ga.squeeze(-1) * dad.clamp_min(0) / (s * s)
        return g_fh, g_k, g_e, None


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x: N x P x C, idx: N x L -> N x L x C."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def coherent_attention(x: torch.Tensor, mask: torch.Tensor, similarity: str = "cosine",
                       eps: float = 1e-8, return_attention: bool = False):
    """The CSA layer as a function; see the module docstring. Returns features (and attention)."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    n, c, h, w = x.shape
    if mask.shape[0] != n or mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"CSA mask {tuple(mask.shape)} must be N x 1 x {h} x {w} to match features {tuple(x.shape)}")
    hw = h * w
    hole = mask.reshape(n, hw) > 0.5
    counts = hole.sum(1)
    # a sample with no known position has nothing to copy from: it passes through unchanged
    active = (counts > 0) & (counts < hw)
    steps = int(counts[active].max()) if bool(active.any()) else 0
    mixing = best = idx = valid = None
    if steps == 0:
        out = x
    else:
        flat = x.reshape(n, c, hw)
        feats = flat.transpose(1, 2).contiguous()  # N x HW x C: gathers read whole rows
        norms = torch.linalg.vector_norm(feats, dim=-1).clamp_min(_TINY)  # N x HW
        # stable sort of "is known" puts each sample's holes first, in raster order
        idx = torch.sort((~hole).to(torch.uint8), dim=1, stable=True).indices[:, :steps]
        valid = (torch.arange(steps, device=x.device).unsqueeze(0) < counts.unsqueeze(1)) & active.unsqueeze(1)
        f = _gather(feats, idx)
        fh = f / torch.gather(norms, 1, idx).unsqueeze(-1)
        q = fh if similarity == "cosine" else f
        with torch.no_grad():
            sim = torch.bmm(q, (feats / norms.unsqueeze(-1)).transpose(1, 2))  # N x L x HW
            sim.masked_fill_(hole.unsqueeze(1), float("-inf"))
            best = sim.argmax(-1)
            del sim
        k = _gather(feats, best)
        # Dmax again from the two chosen vectors: exact gradient without back-propagating the search
        dmax = torch.linalg.vecdot(q, k) / torch.gather(norms, 1, best)
        e = torch.where(valid, dmax.clamp_min(0) + eps, torch.ones_like(dmax))
        gen, mixing = _Generate.apply(fh.transpose(0, 1).contiguous(), k.transpose(0, 1).contiguous(),
                                      e.transpose(0, 1).contiguous(), similarity == "cosine")
        # padded steps write the original feature back, so they change nothing
        gen = torch.where(valid.unsqueeze(-1), gen.transpose(0, 1), f)
        out = flat.scatter(2, idx.unsqueeze(1).expand(-1, c, -1), gen.transpose(1, 2)).reshape(n, c, h, w)
    if not return_attention:
        return out
    with torch.no_grad():
        att = torch.eye(hw, dtype=x.dtype, device=x.device).repeat(n, 1, 1)
        if steps:
            a = mixing.transpose(0, 1)  # N x L
            row = x.new_zeros(n, hw)
            rows = torch.arange(n, device=x.device)
            for t in range(steps):
                row = row * a[:, t:t + 1]
                row[rows, best[:, t]] += 1 - a[:, t]
                sel = valid[:, t]
                att[rows[sel], idx[sel, t]] = row[sel]
    return out, att


class CSALayer(nn.Module):
    """Coherent semantic attention: fills hole features from known ones, coherently in raster order."""

    roles = ("feature-attention",)

    def __init__(self, cfg: CSAConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = attrs.evolve(cfg if cfg is not None else CSAConfig(), **overrides)
        self.similarity = cfg.similarity
        self.eps = cfg.eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_attention: bool = False, **context):
        # the recurrence accumulates: keep it in fp32 even under bf16/fp16 autocast
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = x.dtype if x.dtype == torch.float64 else torch.float32
            return coherent_attention(x.to(dtype), mask.to(dtype), self.similarity, self.eps, return_attention)

    def extra_repr(self) -> str:
        return f"similarity={self.similarity!r}, eps={self.eps}"


def layer_example(module: CSALayer):
    x = torch.rand(2, 4, 6, 5)
    mask = torch.zeros(2, 1, 6, 5)
    mask[0, :, 2:4, 1:4] = 1
    mask[1, :, 0:3, 0:2] = 1
    return (x, mask)
