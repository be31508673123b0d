"""P-IDS / U-IDS: the squared-hinge SVM by hand, against scikit-learn's LinearSVC where installed."""
import pytest
import torch

from genfw.core.eval.ids import decision, fit_linear_svm, pids_uids


def test_svm_symmetric_points_by_hand():
    # x = +-a with labels +-1: the bias is 0 by symmetry and 0.5 w^2 + 2 C (1 - a w)^2 is minimal at
    # w = 4 C a / (1 + 4 C a^2) (both points inside the margin for these values)
    a, c = 0.5, 1.0
    w = fit_linear_svm(torch.tensor([[a], [-a]]), torch.tensor([1.0, -1.0]), c)
    assert w[0].item() == pytest.approx(4 * c * a / (1 + 4 * c * a * a), rel=1e-9)
    assert w[1].item() == pytest.approx(0.0, abs=1e-12)


def test_matches_sklearn_linearsvc():
    svm = pytest.importorskip("sklearn.svm")
    g = torch.Generator().manual_seed(0)
    real = torch.randn(60, 5, generator=g) + 0.3
    fake = torch.randn(60, 5, generator=g)
    x = torch.cat([real, fake])
    y = torch.cat([torch.ones(60), -torch.ones(60)])
    ref = svm.LinearSVC(dual=False, tol=1e-10, max_iter=10000).fit(x.numpy(), (y > 0).numpy())
    w = fit_linear_svm(x, y)
    assert torch.allclose(w[:-1], torch.from_numpy(ref.coef_[0]), atol=1e-5)
    assert w[-1].item() == pytest.approx(float(ref.intercept_[0]), abs=1e-5)
    got = pids_uids(real, fake)
    fr = torch.from_numpy(ref.decision_function(real.numpy()))
    ff = torch.from_numpy(ref.decision_function(fake.numpy()))
    assert got["pids"] == pytest.approx(float((ff > fr).double().mean()))
    assert got["uids"] == pytest.approx(1 - ref.score(x.numpy(), (y > 0).numpy()))
    assert torch.allclose(decision(w, real), fr, atol=1e-5)


def test_indistinguishable_sets_score_high_and_separable_ones_zero():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(400, 3, generator=g)
    same = pids_uids(real, torch.randn(400, 3, generator=g))
    far = pids_uids(real, torch.randn(400, 3, generator=g) + 10)
    assert same["uids"] > 0.4 and same["pids"] > 0.3
    assert far["uids"] == 0.0 and far["pids"] == 0.0
