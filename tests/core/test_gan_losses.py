"""The core GAN losses against values computed by hand on two-element score vectors."""
import math

import pytest
import torch

from genfw.core.losses import BCELoss, HingeLoss, LSGANLoss, RaLSGANLoss

REAL = torch.tensor([2.0, 0.0])
FAKE = torch.tensor([-1.0, 1.0])


def _softplus(x):
    return math.log1p(math.exp(x))


def test_bce_on_logits():
    # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
    d = (_softplus(-2) + _softplus(0)) / 2 + (_softplus(-1) + _softplus(1)) / 2
    g = (_softplus(1) + _softplus(-1)) / 2
    assert BCELoss().d(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert BCELoss().g(FAKE).item() == pytest.approx(g, rel=1e-6)


def test_bce_on_probabilities():
    p_real, p_fake = torch.tensor([0.9, 0.6]), torch.tensor([0.2, 0.5])
    d = -(math.log(0.9) + math.log(0.6)) / 2 - (math.log(0.8) + math.log(0.5)) / 2
    assert BCELoss(from_probabilities=True).d(p_real, p_fake).item() == pytest.approx(d, rel=1e-6)
    assert BCELoss(from_probabilities=True).g(p_fake).item() == pytest.approx(-(math.log(0.2) + math.log(0.5)) / 2, rel=1e-6)


def test_hinge():
    # D: mean(relu(1 - [2, 0])) + mean(relu(1 + [-1, 1])) = (0 + 1)/2 + (0 + 2)/2
    assert HingeLoss().d(REAL, FAKE).item() == pytest.approx(1.5)
    assert HingeLoss().g(FAKE).item() == pytest.approx(0.0)  # -mean([-1, 1])


def test_lsgan():
    # D: 0.5 * mean([1, 1]) + 0.5 * mean([1, 1]); G: 0.5 * mean([4, 0])
    assert LSGANLoss().d(REAL, FAKE).item() == pytest.approx(1.0)
    assert LSGANLoss().g(FAKE).item() == pytest.approx(1.0)


def test_ralsgan():
    # mean real = 1, mean fake = 0
    # D: mean((real - 0 - 1)^2) + mean((fake - 1 + 1)^2) = mean([1, 1]) + mean([1, 1]) = 2
    # G: mean((real - 0 + 1)^2) + mean((fake - 1 - 1)^2) = mean([9, 1]) + mean([9, 1]) = 10
    assert RaLSGANLoss().d(REAL, FAKE).item() == pytest.approx(2.0)
    assert RaLSGANLoss().g(FAKE, REAL).item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="real scores"):
        RaLSGANLoss().g(FAKE)
