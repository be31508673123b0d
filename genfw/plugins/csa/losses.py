"""CSA's generator-side losses: reconstruction (both stages) and the consistency loss.

The adversarial terms use the core's RaLSGAN (`core.ralsgan`) through the registry.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(coarse: torch.Tensor, refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_re = |I_p - I_gt|_1 + |I_r - I_gt|_1 (means over pixels, in the networks' [-1, 1] range)."""
    return F.l1_loss(coarse, target) + F.l1_loss(refined, target)


def consistency_loss(csa: torch.Tensor, mirror: torch.Tensor, target: torch.Tensor,
                     hole: torch.Tensor) -> torch.Tensor:
    """L_c over hole positions: |CSA(x)_y - Phi(I_gt)_y|^2 + |CSA_d(x)_y - Phi(I_gt)_y|^2.

    `target` is VGG-16 relu4_3 of the ground truth (resized to the CSA level if that level is not
    1/8 of the image); `hole` is the mask at that level (N x 1 x h x w). The paper's sum is taken as
    a mean over hole positions and channels so lambda_c does not depend on the image size; the
    reference code averages too (MSE). Zero when the batch has no hole at that level.
    """
    if target.shape[-2:] != csa.shape[-2:]:
        target = F.interpolate(target, size=csa.shape[-2:], mode="bilinear", align_corners=False)
    target = target.detach()  # the ground truth's features are a fixed target
    weight = hole.to(csa.dtype)
    count = weight.sum() * csa.shape[1]
    if count == 0:
        return (csa.sum() + mirror.sum()) * 0
    err = ((csa - target) ** 2 + (mirror - target) ** 2) * weight
    return err.sum() / count
