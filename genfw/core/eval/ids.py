"""P-IDS and U-IDS (Zhao et al. 2021, Co-Mod-GAN): how often a linear classifier on Inception features
mistakes completions for real images.

A linear SVM separates real (+1) from completed (-1) images by their Inception pool features.
U-IDS (unpaired) is its misclassification rate on those same images; P-IDS (paired) is the share of
pairs (real image i, its completion i) whose completion scores as more real, f(fake_i) > f(real_i).
Higher is better for both (0.5 / 0.5 at indistinguishable). Co-Mod-GAN fits scikit-learn's
`LinearSVC(dual=False)`: the L2-regularised squared-hinge primal

    min_w  1/2 |w|^2 + C sum_i max(0, 1 - y_i w.[x_i, 1])^2        (C = 1, bias regularised too)

This objective is strictly convex, so its minimiser is unique and any exact solver finds the same
w; here a Newton method with a backtracking line search (float64) solves it without scikit-learn.
Few images make the classes linearly separable in 2048 dimensions (both scores near 0): the
metric needs thousands of images, like FID.
"""
from __future__ import annotations

import torch


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, tol: float = 1e-8,
                   max_iter: int = 100) -> torch.Tensor:
    """Weights w (d + 1, last = bias) of the squared-hinge L2 SVM above; x: N x d, y: N in {-1, +1}."""
    X = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64, device=x.device)], dim=1)
    y = y.double()
    w = torch.zeros(X.shape[1], dtype=torch.float64, device=x.device)

    def objective(v):
        m = (1 - y * (X @ v)).clamp_min(0)
        return 0.5 * v @ v + c * (m * m).sum()

    f = objective(w)
    for _ in range(max_iter):
        active = (1 - y * (X @ w)) > 0
        Xa = X[active]
        grad = w + 2 * c * Xa.T @ (Xa @ w - y[active])
        if grad.norm() <= tol * max(1.0, float(f)):
            break
        H = torch.eye(X.shape[1], dtype=torch.float64, device=x.device) + 2 * c * Xa.T @ Xa
        step = torch.linalg.solve(H, grad)
        t = 1.0
        while True:  # Armijo backtracking: the generalised Hessian changes where margins cross 1
            new = w - t * step
            fn = objective(new)
            if fn <= f - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t *= 0.5
        if f - fn <= tol * max(1.0, float(f)):
            w, f = new, fn
            break
        w, f = new, fn
    return w


def decision(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x.double() @ w[:-1] + w[-1]


def pids_uids(real: torch.Tensor, fake: torch.Tensor, c: float = 1.0) -> dict[str, float]:
    """{"pids", "uids"} from paired N x d Inception features (row i of `fake` completes row i of `real`)."""
    if real.shape != fake.shape or len(real) < 2:
        raise ValueError("P-IDS / U-IDS need paired feature sets of the same shape, at least 2 each")
    x = torch.cat([real, fake])
    y = torch.cat([torch.ones(len(real)), -torch.ones(len(fake))])
    w = fit_linear_svm(x, y, c)
    fr, ff = decision(w, real), decision(w, fake)
    accuracy = float(((fr > 0).sum() + (ff <= 0).sum()) / len(x))
    return {"pids": float((ff > fr).double().mean()), "uids": 1.0 - accuracy}
