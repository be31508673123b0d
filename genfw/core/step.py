"""One optimisation step of any algorithm: phases, grad toggling, precision, aux losses, NaN guard."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch

from genfw.core.algorithm import Algorithm
from genfw.core.errors import GenfwError
from genfw.core.nn import drain_aux_losses, set_requires_grad


class NonFiniteLossError(GenfwError):
    """A loss became NaN or Inf."""


def autocast_for(precision: str, device: torch.device):
    """The autocast context of a precision policy (fp32: none)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise GenfwError("precision fp16 needs a CUDA device; use bf16 on CPU")
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _autocast_off(precision: str, device: torch.device):
    """Autocast disabled inside the step's region without dropping its cast cache (nesting > 0)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def _scalar(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean()) if v.numel() else None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def run_step(algo: Algorithm, batch: dict, step: int, *, precision: str = "fp32",
             scaler: torch.amp.GradScaler | None = None, grad_clip: float = 0.0,
             grad_sync: Callable[[list[torch.nn.Parameter]], None] | None = None) -> dict[str, float]:
    """Run every phase of `algo` on `batch`; returns the step's named scalars."""
    device = algo.ctx.device if algo.ctx is not None else torch.device("cpu")
    for net in algo.nets.values():
        drain_aux_losses(net)  # stale side losses (e.g. from sampling) must not leak in
        set_requires_grad(net, True)
    logs: dict[str, float] = {}
    # One autocast region for the whole step, so a weight's low-precision copy is cast once and
    # shared by `prepare` and every phase until an optimizer changes that weight (the cache is
    # dropped after each optimizer step); backward and the update run with autocast off.
    with autocast_for(precision, device):
        state = algo.prepare(batch, step)
        for phase in algo.phases(step):
            _run_phase(algo, phase, state, step, logs, precision, device, scaler, grad_clip, grad_sync)
    for net in algo.nets.values():
        set_requires_grad(net, True)
    for sched in algo.schedulers.values():
        sched.step()
    for key, val in (algo.end_step(state, step) or {}).items():
        s = _scalar(val)
        if s is not None:
            logs[key] = s
    return logs


def _run_phase(algo: Algorithm, phase, state: dict, step: int, logs: dict[str, float], precision: str,
               device: torch.device, scaler, grad_clip: float, grad_sync) -> None:
    """Loss (under the step's autocast), then backward and update of the phase's networks."""
    for name, net in algo.nets.items():
        set_requires_grad(net, name in phase.updates)
    params = [p for n in phase.updates for p in algo.nets[n].parameters()]
    for n in phase.updates:
        algo.optimizers[n].zero_grad(set_to_none=True)
    out = dict(phase.loss(state))
    total = out["loss"]
    for n in phase.updates:
        for aux_name, aux in drain_aux_losses(algo.nets[n]):
            total = total + aux
            out[aux_name] = out.get(aux_name, 0) + aux.detach()
    for key, val in out.items():
        s = _scalar(val)
        if s is None:
            continue
        if not math.isfinite(s):
            raise NonFiniteLossError(
                f"loss '{phase.name}/{key}' is {s} at step {step}; lower the learning rate, "
                "check the data, or try precision=fp32"
            )
        logs[f"{phase.name}/{key}"] = s
    with _autocast_off(precision, device):
        if scaler is not None:
            scaler.scale(total).backward(inputs=params)
        else:
            total.backward(inputs=params)
        if grad_sync is not None:
            grad_sync(params)
        for n in phase.updates:
            opt = algo.optimizers[n]
            if grad_clip > 0:
                if scaler is not None:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(algo.nets[n].parameters(), grad_clip)
            if scaler is not None:
                scaler.step(opt)
            else:
                opt.step()
        if scaler is not None:
            scaler.update()
    if precision != "fp32":
        torch.clear_autocast_cache()  # the updated weights' cached low-precision copies are stale
