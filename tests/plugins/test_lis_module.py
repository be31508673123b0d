"""LIS plugin: the LIS stack (similarity loss, early stop, exact steps) and the generator wrapper."""
import math

import pytest
import torch

from genfw.core.nn import drain_aux_losses
from genfw.plugins.lis.module import LISGenerator, LISStack


def test_similarity_loss_weights_hand_made():
    stack = LISStack(latent_dim=4, k=3, lam=0.9)
    z0 = torch.randn(5, 4)
    zs = [z0, z0 + 1, z0 + 2, z0 - 3]  # MSE to z_0: 1, 4, 9 (always to the ORIGINAL z_0)
    total, mses = stack.similarity_loss(zs)
    assert [round(float(m), 6) for m in mses] == [1.0, 4.0, 9.0]
    assert math.isclose(float(total), 0.9 * 1 + 0.81 * 4 + 0.729 * 9, rel_tol=1e-6)


def test_forward_adds_similarity_loss_of_executed_modules():
    torch.manual_seed(0)
    stack = LISStack(latent_dim=6, k=3, lam=0.5).eval()
    z = torch.randn(3, 6)
    zs = stack(z, return_all=True)
    (name, loss), = drain_aux_losses(stack)
    assert name == "lis_sim"
    expected = sum(0.5 ** k * torch.mean((zs[k] - z) ** 2) for k in range(1, 4))
    assert torch.allclose(loss, expected)
    stats = stack.stats()
    assert set(stats) == {"z_mean", "z_std", "mse_1", "mse_2", "mse_3"}
    assert math.isclose(stats["z_mean"], float(zs[-1].detach().mean()), rel_tol=1e-5)
    with torch.no_grad():  # sampling: nothing to back-propagate, nothing pending
        stack(z)
    assert drain_aux_losses(stack) == []


def test_residual_structure_and_exact_steps():
    torch.manual_seed(1)
    stack = LISStack(latent_dim=5, k=3)
    z = torch.randn(2, 5)
    with torch.no_grad():
        manual = [z]
        for blk in stack.blocks:  # z' = z + FC2(TPReLU(FC1(z))) with the layers as written
            manual.append(manual[-1] + blk.fc2(blk.act(blk.fc1(manual[-1]))))
        for k in range(4):  # exactly k modules, in training mode too (no random stop)
            stack.train()
            assert torch.allclose(stack(z, steps=k), manual[k])
        stack.eval()
        assert torch.allclose(stack(z), manual[3])  # evaluation: every module
        assert len(stack(z, return_all=True)) == 4
    with pytest.raises(ValueError):
        stack(z, steps=4)


def test_eval_runs_all_modules_always():
    stack = LISStack(latent_dim=3, k=3).eval()
    stack.rng = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3)
    with torch.no_grad():
        assert all(len(stack(z, return_all=True)) == 4 for _ in range(200))


def test_early_stop_frequencies_match_half_power():
    K, n = 3, 6000
    stack = LISStack(latent_dim=2, k=K).train()
    stack.rng = torch.Generator().manual_seed(123)
    executed = [stack._executed(None) for _ in range(n)]
    for k in range(K):
        reached = sum(e >= k for e in executed)
        stopped = sum(e == k for e in executed)
        p = 0.5 ** (K - k)  # 1/8, 1/4, 1/2
        sigma = math.sqrt(reached * p * (1 - p))
        assert abs(stopped - reached * p) < 4.5 * sigma, (k, stopped, reached, p)
    # overall: P(all K run) = 7/8 * 3/4 * 1/2
    full = sum(e == K for e in executed) / n
    assert abs(full - 21 / 64) < 4.5 * math.sqrt(21 / 64 * 43 / 64 / n)


def test_early_stop_is_batchwise_and_seeded():
    stack = LISStack(latent_dim=2, k=3).train()
    stack.rng = torch.Generator().manual_seed(7)
    a = [stack._executed(None) for _ in range(50)]
    stack.rng.manual_seed(7)
    assert a == [stack._executed(None) for _ in range(50)]
    z = torch.randn(8, 2)
    out = stack(z, return_all=True)
    assert all(t.shape == z.shape for t in out)  # one decision for the whole batch


class _Gen(torch.nn.Module):
    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 6)
        self.seen = None

    def forward(self, z, from_prior=True, **kw):
        self.seen = from_prior
        return self.lin(z)


def test_wrapper_acts_only_on_prior_noise():
    torch.manual_seed(2)
    g = LISGenerator(_Gen(), LISStack(latent_dim=4, k=2)).eval()
    z = torch.randn(3, 4)
    y = g(z, from_prior=False)
    assert torch.allclose(y, g.generator.lin(z)) and g.generator.seen is False
    assert drain_aux_losses(g) == []
    y2 = g(z)
    assert [n for n, _ in drain_aux_losses(g)] == ["lis_sim"]
    with torch.no_grad():
        assert torch.allclose(y2, g.generator.lin(g.lis(z)))
    assert g.latent_dim == 4
    assert torch.allclose(g(z, lis_steps=0), g.generator.lin(z))


@pytest.mark.parametrize("second_wn", [True, False])
def test_folded_block_equals_paper_form_with_gradients(second_wn):
    torch.manual_seed(4)
    stack = LISStack(latent_dim=6, k=1, second_wn=second_wn)
    blk = stack.blocks[0]
    with torch.no_grad():
        blk.act.threshold.uniform_(-0.5, 0.5)
        blk.act.weight.copy_(torch.linspace(-0.2, 1.3, 6))  # some slopes outside [0, 1]: clamped
    z = torch.randn(5, 6)
    fast, ref = blk(z), blk.reference_forward(z)
    assert torch.allclose(fast, ref, atol=1e-5)
    g_fast = torch.autograd.grad(fast.square().sum(), list(blk.parameters()))
    g_ref = torch.autograd.grad(ref.square().sum(), list(blk.parameters()))
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():  # cached path, then after an in-place change
        assert torch.allclose(blk(z), ref, atol=1e-5)
        blk.act.threshold.add_(0.3)
        assert torch.allclose(blk(z), blk.reference_forward(z), atol=1e-5)
