"""LIS plugin: weight-normalised layers and TPReLU against their formulas."""
import math

import pytest
import torch
import torch.nn.functional as F

from genfw.plugins.lis.layers import TPReLU, WNConv2d, WNConvTranspose2d, WNLinear


def test_wn_linear_hand_computed():
    m = WNLinear(2, 2, gain=True, bias=True)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
        m.gain.copy_(torch.tensor([2.0, 1.0]))
        m.bias.copy_(torch.tensor([0.5, -1.0]))
    y = m(torch.tensor([[1.0, 1.0]]))
    # unit 0: 2 * (3 + 4) / sqrt(25 + 1e-6) + 0.5; unit 1: 1 / sqrt(1 + 1e-6) - 1
    expected = torch.tensor([[2 * 7 / math.sqrt(25 + 1e-6) + 0.5, 1 / math.sqrt(1 + 1e-6) - 1]])
    assert torch.allclose(y, expected, atol=1e-6)


def test_wn_linear_matches_formula_random():
    torch.manual_seed(0)
    m = WNLinear(5, 3)
    assert m.gain is None and m.bias is None  # plain WN: no gain, no bias
    bound = 0.01 / math.sqrt(5)
    assert m.weight.abs().max() <= bound
    x = torch.randn(4, 5)
    w = m.weight
    expected = (x @ w.t()) / torch.sqrt((w ** 2).sum(1) + 1e-6)
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_wn_conv2d_norm_over_in_kh_kw():
    torch.manual_seed(1)
    m = WNConv2d(2, 3, kernel_size=3, stride=1, padding=1)
    x = torch.randn(2, 2, 5, 5)
    raw = F.conv2d(x, m.weight, None, 1, 1)
    for o in range(3):
        norm = math.sqrt(float((m.weight[o].detach() ** 2).sum()) + 1e-6)
        assert torch.allclose(m(x)[:, o], raw[:, o] / norm, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_wn_conv_transpose_divides_squared_norm_by_stride2(stride):
    torch.manual_seed(2)
    m = WNConvTranspose2d(3, 2, kernel_size=4, stride=stride, padding=1, gain=True, bias=True)
    with torch.no_grad():
        m.gain.copy_(torch.tensor([1.5, 0.5]))
        m.bias.copy_(torch.tensor([0.1, 0.2]))
    x = torch.randn(2, 3, 3, 3)
    raw = F.conv_transpose2d(x, m.weight, None, stride, 1)
    y = m(x)
    for o in range(2):
        sq = float((m.weight[:, o].detach() ** 2).sum())  # weight is (in, out, kh, kw): per output over (in, kh, kw)
        norm = math.sqrt(sq / stride ** 2 + 1e-6)
        assert torch.allclose(y[:, o], m.gain[o] * raw[:, o] / norm + m.bias[o], atol=1e-4)


def test_cached_weight_follows_optimizer_steps():
    torch.manual_seed(3)
    m = WNLinear(4, 4)
    x = torch.randn(2, 4)
    with torch.no_grad():
        y0 = m(x)
        assert torch.equal(m(x), y0)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m(x).pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        y1 = m(x)
    expected = F.linear(x, m.weight / torch.sqrt((m.weight ** 2).sum(1, keepdim=True) + 1e-6))
    assert not torch.allclose(y0, y1) and torch.allclose(y1, expected, atol=1e-6)


def test_tprelu_values():
    t = TPReLU(2)
    assert torch.allclose(t.weight, torch.full((2,), 0.25)) and torch.all(t.threshold == 0)
    x = torch.tensor([[-2.0, 3.0]])
    assert torch.allclose(t(x), torch.tensor([[-0.5, 3.0]]))
    with torch.no_grad():
        t.threshold.fill_(1.0)
    # channel 0: PReLU(-2 - 1) + 1 = -0.75 + 1; channel 1: (3 - 1) + 1
    assert torch.allclose(t(x), torch.tensor([[0.25, 3.0]]))
    # per-channel on N x C x H x W
    x4 = torch.full((1, 2, 2, 2), -1.0)
    with torch.no_grad():
        t.threshold.zero_()
        t.weight.copy_(torch.tensor([0.5, 0.1]))
    y = t(x4)
    assert torch.allclose(y[0, 0], torch.full((2, 2), -0.5)) and torch.allclose(y[0, 1], torch.full((2, 2), -0.1))


def test_tprelu_slope_clamped_but_still_trainable():
    t = TPReLU(1)
    with torch.no_grad():
        t.weight.fill_(1.7)
    x = torch.tensor([[-2.0]], requires_grad=True)
    y = t(x)
    assert torch.allclose(y, torch.tensor([[-2.0]]))  # slope acts as 1
    y.sum().backward()
    assert t.weight.grad is not None and t.weight.grad.abs().sum() > 0  # straight-through gradient
    assert t.threshold.grad is not None
