"""The CSA layer: hand-computed 3x3 cases, equality with the per-position baseline, gradients, masks."""
import importlib.util
import math
import shutil
from pathlib import Path

import pytest
import torch

from genfw.plugins.csa.layer import CSALayer, coherent_attention
from genfw.plugins.csa.networks import downsample_mask

_spec = importlib.util.spec_from_file_location(
    "csa_baseline", Path(__file__).resolve().parents[2] / "benchmarks" / "csa_baseline.py")
_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_baseline)
csa_loop = _baseline.csa_loop

# 3x3 map, 2 channels; holes at positions 4 (centre) and 5 (middle right), raster order
FEATS = {0: (1, 0), 1: (0, 1), 2: (1, 1), 3: (3, 1), 4: (4, 1), 5: (1, 2), 6: (1, 3), 7: (2, 2), 8: (0, 2)}


def _hand_case():
    x = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    for p, v in FEATS.items():
        x[0, :, p // 3, p % 3] = torch.tensor(v, dtype=torch.float64)
    mask = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    mask[0, 0, 1, 1] = mask[0, 0, 1, 2] = 1
    return x, mask


def test_hand_built_cosine():
    x, mask = _hand_case()
    out, att = coherent_attention(x, mask, "cosine", return_attention=True)
    flat = out[0].reshape(2, 9)
    # hole 4 = (4, 1): best cosine among known is p3 = (3, 1) (13/sqrt(170) = 0.997 > p0's 0.970)
    assert torch.allclose(flat[:, 4], torch.tensor([3.0, 1.0], dtype=torch.float64))
    # hole 5 = (1, 2): best is p6 = (1, 3), Dmax = 7/sqrt(50); Dad = cos((3, 1), (1, 2)) = 5/sqrt(50)
    # so m_5 = 5/12 * (3, 1) + 7/12 * (1, 3)
    assert torch.allclose(flat[:, 5], torch.tensor([22 / 12, 26 / 12], dtype=torch.float64), atol=1e-7)
    known = [p for p in range(9) if p not in (4, 5)]
    assert torch.equal(flat[:, known], x[0].reshape(2, 9)[:, known])
    expected = torch.eye(9, dtype=torch.float64)
    expected[4] = 0
    expected[4, 3] = 1
    expected[5] = 0
    expected[5, 3], expected[5, 6] = 5 / 12, 7 / 12
    assert torch.allclose(att[0], expected, atol=1e-7)
    assert torch.allclose(att[0].sum(1), torch.ones(9, dtype=torch.float64))


def test_hand_built_key_only():
    x, mask = _hand_case()
    out = coherent_attention(x, mask, "key-only")[0].reshape(2, 9)
    # Dmax = <m, k/|k|>: hole 4 -> p3 (13/sqrt10 = 4.11 > p0's 4); hole 5 -> p6 (7/sqrt10 = 2.21 > p7's 2.12)
    # Dad_5 = <m_4, p5/|p5|> = <(3, 1), (1, 2)>/sqrt5 = sqrt5
    dad, dmax = math.sqrt(5), 7 / math.sqrt(10)
    m5 = (dad * torch.tensor([3.0, 1.0]) + dmax * torch.tensor([1.0, 3.0])) / (dad + dmax)
    assert torch.allclose(out[:, 4], torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert torch.allclose(out[:, 5], m5.double(), atol=1e-7)


def _masks(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, h, w, generator=g) < 0.35).double()


@pytest.mark.parametrize("similarity", ["cosine", "key-only"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_position_baseline(similarity, seed):
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(3, 6, 6, 5, generator=g, dtype=torch.float64)
    mask = _masks(3, 6, 5, seed)
    mask[2] = 0  # a sample without holes passes through
    mask[1, 0, :3, :] = 1  # a big block: long recurrences
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    out_a = coherent_attention(xa, mask, similarity)
    out_b = csa_loop(xb, mask, similarity)
    assert torch.allclose(out_a, out_b, atol=1e-10)
    out_a.backward(grad)
    out_b.backward(grad)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-9)
    assert torch.equal(out_a[2], x[2])


@pytest.mark.parametrize("similarity", ["cosine", "key-only"])
def test_gradcheck(similarity):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, 1:3, 1:3] = 1
    mask[1, 0, 0, :] = 1
    mask[1, 0, 3, 2] = 1
    assert torch.autograd.gradcheck(lambda t: coherent_attention(t, mask, similarity), (x,))


def test_per_sample_masks_in_a_batch_equal_single_runs():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 5, 6, 6, generator=g)
    mask = _masks(4, 6, 6, 7).float()
    batch = coherent_attention(x, mask)
    for i in range(4):
        single = coherent_attention(x[i:i + 1], mask[i:i + 1])
        assert torch.allclose(batch[i:i + 1], single, atol=1e-6)


def test_non_square_map_and_known_positions_unchanged():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 4, 3, 7, generator=g, dtype=torch.float64)
    mask = _masks(2, 3, 7, 9)
    out, att = coherent_attention(x, mask, return_attention=True)
    assert out.shape == x.shape
    assert torch.allclose(out, csa_loop(x, mask), atol=1e-10)
    known = mask.expand_as(x) < 0.5
    assert torch.equal(out[known], x[known])
    # out = A F, rows sum to 1
    flat = x.reshape(2, 4, 21).transpose(1, 2)
    assert torch.allclose(torch.bmm(att, flat).transpose(1, 2).reshape(x.shape), out, atol=1e-10)
    assert torch.allclose(att.sum(-1), torch.ones(2, 21, dtype=torch.float64))


def test_signed_features_stay_finite_and_convex():
    # every similarity negative: without the clamp Dad + Dmax would be ~0 or negative
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [-1.0, -0.9]]).T.reshape(1, 2, 2, 2)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 2, 2)
    out, att = coherent_attention(x, mask, return_attention=True)
    assert torch.isfinite(out).all()
    assert (att >= 0).all() and torch.allclose(att.sum(-1), torch.ones(1, 4))
    # clamped similarities: each hole copies its (least dissimilar) known patch
    assert torch.allclose(out[0, :, 1, 0], x[0, :, 0, 0]) or torch.allclose(out[0, :, 1, 0], x[0, :, 0, 1])


def test_layer_module_and_autocast_safe():
    layer = CSALayer()
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, mask)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="must be N x 1"):
        layer(x, torch.zeros(1, 1, 8, 8))


def test_mask_downsampling_reference_rule():
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 64:192, 64:192] = 1  # the paper's centre hole
    small = downsample_mask(mask, 3)
    assert small.shape == (1, 1, 32, 32)
    assert small.sum() == 16 * 16 and small[0, 0, 8:24, 8:24].all()
    # a lone hole pixel covers 1/16 of one 4x4 window: below 5/16 it vanishes after one conv
    dot = torch.zeros(1, 1, 8, 8)
    dot[..., 3, 3] = 1
    assert downsample_mask(dot, 1).sum() == 0
    block = torch.zeros(1, 1, 8, 8)
    block[..., 2:4, 2:4] = 1  # 4/16 in the aligned window: still below 5/16
    assert downsample_mask(block, 1).sum() == 0
    block[..., 2:5, 2:4] = 1  # 6/16 of the window at (1, 1)
    assert downsample_mask(block, 1)[0, 0, 1, 1] == 1


# --- the C kernel path and the torch-op path (both must be the same function) --------------------
from genfw.plugins.csa import recurrence  # noqa: E402

csa_reference_style = _baseline.csa_reference_style
needs_kernel = pytest.mark.skipif(recurrence.kernel() is None, reason="no C compiler for the CSA kernel")


@pytest.mark.parametrize("similarity", ["cosine", "key-only"])
def test_reference_style_baseline_matches_algorithm_1(similarity):
    # the benchmark's baseline (search as a convolution, attention-matrix recombination) is the
    # same function as the per-position oracle, values and gradients
    g = torch.Generator().manual_seed(11)
    x = torch.rand(2, 5, 5, 4, generator=g, dtype=torch.float64)
    mask = _masks(2, 5, 4, 3)
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = csa_reference_style(xa, mask, similarity), csa_loop(xb, mask, similarity)
    assert torch.allclose(out_a, out_b, atol=1e-12)
    out_a.backward(grad)
    out_b.backward(grad)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-10)


@needs_kernel
@pytest.mark.parametrize("similarity", ["cosine", "key-only"])
@pytest.mark.parametrize("channels_last", [False, True])
# the map pass's register tiles: 16 x 16 with a position remainder; whole tiles with streaming
# stores (aligned rows); a channel remainder past the tiles
@pytest.mark.parametrize("c,h,w", [(16, 8, 7), (32, 16, 12), (40, 9, 11)])
def test_kernel_and_torch_paths_agree_with_the_reference_style_baseline(similarity, channels_last, c, h, w):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, c, h, w, generator=g).relu_()
    mask = _masks(3, h, w, 5).float()
    mask[1] = 0            # nothing to fill
    mask[2, 0, :4] = 1     # a long recurrence, other hole count than sample 0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=g)
    outs, grads = [], []
    for fn in (lambda t: coherent_attention(t, mask, similarity),
               lambda t: coherent_attention(t, mask, similarity, use_kernel=False),
               lambda t: csa_reference_style(t, mask, similarity)):
        xx = x.detach().clone().requires_grad_()
        out = fn(xx)
        out.backward(grad)
        outs.append(out.detach())
        grads.append(xx.grad)
    assert outs[0].is_contiguous(memory_format=torch.channels_last) == channels_last  # layout kept
    for out, gr in zip(outs[1:], grads[1:]):
        assert torch.allclose(outs[0], out, atol=1e-5)
        assert torch.allclose(grads[0], gr, atol=1e-4)
    assert torch.equal(outs[0][1], x[1])


@needs_kernel
@pytest.mark.parametrize("similarity", ["cosine", "key-only"])
def test_gradcheck_torch_path(similarity):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, 1:3, 1:3] = 1
    mask[1, 0, 0, :] = 1
    assert torch.autograd.gradcheck(lambda t: coherent_attention(t, mask, similarity, use_kernel=False), (x,))


def test_kernel_switch_off_falls_back_to_torch_ops(monkeypatch):
    monkeypatch.setenv("GENFW_CSA_KERNEL", "0")
    assert recurrence.kernel() is None
    x, mask = _hand_case()
    assert torch.allclose(coherent_attention(x, mask)[0].reshape(2, 9)[:, 4], torch.tensor([3.0, 1.0], dtype=torch.float64))


def test_layer_threads_setting_is_restored():
    before = torch.get_num_threads()
    x, mask = _hand_case()
    for threads in (1, 0, 2):
        out = coherent_attention(x.clone().requires_grad_(), mask, threads=threads)
        out.sum().backward()
        assert torch.get_num_threads() == before
    assert CSALayer(threads=3).threads == 3


@needs_kernel
@pytest.mark.parametrize("refused", ["-march=native", "-fopenmp"])
def test_kernel_builds_without_native_flags_when_the_compiler_refuses_them(tmp_path, monkeypatch, refused):
    # a compiler that rejects -march=native (as some non-x86 gcc do) or has no OpenMP runtime
    # still gets a working kernel
    real = shutil.which("cc") or shutil.which("gcc")
    wrapper = tmp_path / "cc"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = "{refused}" ] && exit 1; done\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("GENFW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(recurrence, "_lib", None)
    assert recurrence.kernel() is not None
    assert len(list((tmp_path / "cache" / "kernels").glob("*.so"))) == 1
    x, mask = _hand_case()
    assert torch.allclose(coherent_attention(x, mask)[0].reshape(2, 9)[:, 4], torch.tensor([3.0, 1.0], dtype=torch.float64))
    # the plain build has no AVX-512 tiles, the other no OpenMP: their float32 code must agree with
    # the torch ops too, with either search
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 32, 9, 7, generator=g).relu_()
    mask = _masks(3, 9, 7, 8).float()
    for search in ("fp32", "bf16"):
        monkeypatch.setenv("GENFW_CSA_SEARCH", search)
        for xx in (x, x.contiguous(memory_format=torch.channels_last)):
            for needs_grad in (False, True):  # the scratch path and the path that saves for backward
                xg = xx.detach().requires_grad_(needs_grad)
                assert torch.allclose(coherent_attention(xg, mask), coherent_attention(xg, mask, use_kernel=False),
                                      atol=1e-5)
    monkeypatch.setattr(recurrence, "_lib", None)  # the next test builds (or finds) the native one again


@needs_kernel
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_path_reuses_scratch_without_aliasing_its_outputs(channels_last):
    """Without autograd the kernel path works in reused per-thread scratch: calls of other sizes in
    between must neither change an earlier result nor be changed by stale scratch contents."""
    recurrence.release_scratch()
    g = torch.Generator().manual_seed(5)
    cases = []
    for n, c, h, w, mask_seed in ((2, 24, 9, 8, 20), (1, 8, 5, 5, 3), (3, 24, 9, 8, 30)):
        x = torch.randn(n, c, h, w, generator=g).relu_()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        mask = _masks(n, h, w, mask_seed).float()
        mask[-1] = 1  # nothing known: passes through
        cases.append((x, mask))
    with torch.no_grad():
        firsts = [(coherent_attention(x, m), coherent_attention(x, m, use_kernel=False)) for x, m in cases]
        kept = [a.clone() for a, _ in firsts]
        again = [coherent_attention(x, m) for x, m in reversed(cases)][::-1]
    for (out, ref), copy, later, (x, _) in zip(firsts, kept, again, cases):
        assert torch.allclose(out, ref, atol=1e-5)
        assert torch.equal(out, copy)    # later calls did not write into an earlier output
        assert torch.equal(later, out)   # stale scratch from a bigger call changes nothing
        assert torch.equal(out[-1], x[-1])
