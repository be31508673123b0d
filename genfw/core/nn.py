"""Shared network helpers that are not paper-specific."""
from __future__ import annotations

import torch
from torch import nn


class AuxLoss:
    """Mixin for modules that produce a loss as a side effect of forward (e.g. LIS similarity).

    Call ``self.add_aux_loss(name, value)`` in forward. The engine drains pending auxiliary losses
    of every network a phase updates and adds them to that phase's loss, so such a module trains
    wherever it is plugged in, without the surrounding algorithm knowing about it.
    """

    def add_aux_loss(self, name: str, value: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            return  # sampling / evaluation: nothing will be back-propagated
        pending = self.__dict__.setdefault("_aux_pending", [])
        pending.append((name, value))


def drain_aux_losses(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Pop every pending auxiliary loss inside `module` (any depth)."""
    out: list[tuple[str, torch.Tensor]] = []
    for m in module.modules():
        pending = m.__dict__.get("_aux_pending")
        if pending:
            out.extend(pending)
            pending.clear()
    return out


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2
