"""SmallMapConv2d (small maps as one matrix product) and ChunkedBatchNorm2d (per-chunk statistics)
against the library layers they stand in for: outputs, gradients, running statistics."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from genfw import ChunkedBatchNorm2d, SmallMapConv2d, batch_chunks, batch_chunks_exact

CL = torch.channels_last


def _pair(cin, cout, k, pad, bias):
    torch.manual_seed(0)
    ref = nn.Conv2d(cin, cout, k, padding=pad, bias=bias).double()
    ours = SmallMapConv2d(cin, cout, k, padding=pad, bias=bias).double()
    ours.load_state_dict(ref.state_dict())  # same parameters and state_dict keys
    return ref, ours


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (8, 8), (5, 7)])
@pytest.mark.parametrize("k,pad", [(3, 1), (5, 2), (3, 0), (1, 0)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "contiguous input, channels_last weight",
                                    "channels_last input, contiguous weight"])
@pytest.mark.parametrize("bias", [False, True])
def test_small_map_conv_is_the_convolution(size, k, pad, layout, bias):
    h, w = size
    if h + 2 * pad < k or w + 2 * pad < k:
        pytest.skip("kernel larger than the padded map")
    ref, ours = _pair(6, 5, k, pad, bias)
    x = torch.randn(3, 6, h, w, dtype=torch.float64)
    if layout.startswith("channels_last"):
        x = x.contiguous(memory_format=CL)
    if layout == "channels_last" or layout.endswith("channels_last weight"):  # the patch order follows the weight
        ref, ours = ref.to(memory_format=CL), ours.to(memory_format=CL)
    layout = layout.split(" input")[0]  # the output keeps the input's layout
    assert ours._as_product(x)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa), ours(xb)
    torch.testing.assert_close(yb, ya, rtol=1e-12, atol=1e-12)
    assert yb.is_contiguous(memory_format=CL if layout == "channels_last" else torch.contiguous_format)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)
    for pa, pb in zip(ref.parameters(), ours.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-12, atol=1e-12)


def test_small_map_conv_bf16_autocast_matches_fp32_within_bf16_rounding():
    ref, ours = _pair(64, 32, 3, 1, False)
    ref, ours = ref.float().to(memory_format=CL), ours.float().to(memory_format=CL)
    x = torch.randn(2, 64, 4, 4).contiguous(memory_format=CL)
    want = ref(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ours(x.to(torch.bfloat16))
        lib = ref(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    # bf16 inputs and weights, fp32 accumulation: the same error as the library's own bf16 conv
    err, lib_err = (got.float() - want).abs().max(), (lib.float() - want).abs().max()
    assert err <= 2 * lib_err + 1e-6
    assert err < 0.05 * want.abs().max()


def test_small_map_conv_takes_the_library_path_where_the_product_does_not_apply():
    conv = SmallMapConv2d(4, 4, 3, padding=1)
    assert not conv._as_product(torch.randn(1, 4, 16, 16))  # above small_map pixels
    assert not SmallMapConv2d(4, 4, 3, stride=2, padding=1)._as_product(torch.randn(1, 4, 4, 4))
    assert not SmallMapConv2d(4, 4, 3, padding=1, groups=2)._as_product(torch.randn(1, 4, 4, 4))
    assert not SmallMapConv2d(4, 4, 3, padding=1, padding_mode="reflect")._as_product(torch.randn(1, 4, 4, 4))
    assert not SmallMapConv2d(4, 4, 3, padding="same")._as_product(torch.randn(1, 4, 4, 4))
    x = torch.randn(1, 4, 16, 16)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=0, atol=0)


def test_small_map_conv_flops_count_as_the_convolution():
    _, ours = _pair(8, 16, 3, 1, False)
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        ours(x)
    assert counter.get_total_flops() == 2 * 2 * 4 * 4 * 16 * 8 * 9


def _bn_pair(c, momentum):
    torch.manual_seed(1)
    ref = nn.BatchNorm2d(c, momentum=momentum).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = ChunkedBatchNorm2d(c, momentum=momentum).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("momentum", [0.1, None, 0.0])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_chunked_batch_norm_equals_separate_passes(k, momentum, layout):
    ref, ours = _bn_pair(5, momentum)
    x = torch.randn(2 * k, 5, 3, 4, dtype=torch.float64) * 3 + torch.arange(2 * k, dtype=torch.float64)[:, None, None, None]
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya = torch.cat([ref(c) for c in xa.chunk(k)])  # k separate training passes
    with batch_chunks(ours, k):
        yb = ours(xb)
    torch.testing.assert_close(yb, ya, rtol=1e-12, atol=1e-12)
    # pooled statistics would differ: the chunks' means differ by construction
    assert (F.batch_norm(x, None, None, ref.weight, ref.bias, True) - ya).abs().max() > 0.1
    g = torch.randn_like(ya) * torch.arange(1, 6, dtype=torch.float64)[None, :, None, None]
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=1e-12, atol=1e-12)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == k
    assert ours.chunks == 1  # restored on leaving batch_chunks


def test_chunked_batch_norm_bf16_channels_last_and_eval_mode():
    ref, ours = _bn_pair(8, 0.1)
    ref, ours = ref.float(), ours.float()
    x = torch.randn(4, 8, 6, 6).to(torch.bfloat16).contiguous(memory_format=CL)
    want = torch.cat([ref(c) for c in x.chunk(2)])
    with batch_chunks(ours, 2):
        got = ours(x)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=0)  # same kernel per chunk
    ref.eval(), ours.eval()
    with batch_chunks(ours, 2):  # running statistics: chunks change nothing
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_chunked_batch_norm_rejects_a_batch_that_does_not_split():
    bn = ChunkedBatchNorm2d(3)
    with batch_chunks(bn, 2), pytest.raises(ValueError, match="does not split into 2 equal chunks"):
        bn(torch.randn(3, 3, 2, 2))


def test_chunked_batch_norm_under_a_dispatch_mode():
    _, ours = _bn_pair(4, 0.1)
    x = torch.randn(4, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    with FlopCounterMode(display=False), batch_chunks(ours, 2):
        ours(x).sum().backward()
    assert x.grad is not None and ours.weight.grad is not None


def test_batch_chunks_exact_needs_the_declaration_and_chunk_aware_norms():
    class Declared(nn.Module):
        batch_chunks_exact = True

        def __init__(self, bn):
            super().__init__()
            self.bn = bn

    assert batch_chunks_exact(Declared(ChunkedBatchNorm2d(3)))
    assert not batch_chunks_exact(Declared(nn.BatchNorm2d(3)))  # a plain BN would pool the chunks
    plain = Declared(ChunkedBatchNorm2d(3))
    plain.batch_chunks_exact = False
    assert not batch_chunks_exact(plain)
    assert not batch_chunks_exact(nn.Sequential(ChunkedBatchNorm2d(3)))  # undeclared
