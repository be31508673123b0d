"""FOAM reconstruction losses (sheet eq. 11-13). Images in [0, 1]; every norm is a mean over elements,
so the paper's weights (500 / 8 / 5000) act on per-pixel averages."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def box7(x: torch.Tensor, k: int = 7) -> torch.Tensor:
    """k x k mean filter, same size; border windows average only the pixels inside the image."""
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def boundary_weight(mask: torch.Tensor, k: int = 7) -> torch.Tensor:
    """w = box(M) * (1 - M) + box(1 - M) * M: large on both sides of the hole boundary, 0 far from it."""
    return box7(mask, k) * (1 - mask) + box7(1 - mask, k) * mask


def masked_l1(target: torch.Tensor, output: torch.Tensor, mask: torch.Tensor, kappa: float = 0.7) -> torch.Tensor:
    """kappa * |M (I_gt - I_syn)|_1 + (1 - kappa) * |(1 - M) (I_gt - I_syn)|_1, as means over elements."""
    d = (target - output).abs()
    return kappa * (mask * d).mean() + (1 - kappa) * ((1 - mask) * d).mean()


def boundary_l1(target: torch.Tensor, output: torch.Tensor, mask: torch.Tensor, k: int = 7) -> torch.Tensor:
    return (boundary_weight(mask, k) * (target - output).abs()).mean()


def feature_loss(phi_target: torch.Tensor, phi_output: torch.Tensor) -> torch.Tensor:
    """|phi(I_gt) - phi(I_syn)|_2^2 as a mean over feature elements."""
    return (phi_target - phi_output).pow(2).mean()


def attribute_loss(logits: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per attribute (attributes are independent binary labels)."""
    return F.binary_cross_entropy_with_logits(logits, attributes.to(logits.dtype))
