"""Precision and memory-layout policy per device, detected at run time rather than assumed.

`precision = "auto"` (the trainer's default and the inference commands' `--precision auto`)
resolves here to one of

- bf16 autocast + channels_last, on a CUDA device with bf16, on a CPU that reports AMX
  (``amx_bf16`` in /proc/cpuinfo), or on a CPU where this process's own probe (a 3x3 conv
  forward + backward, bf16 channels_last against the faster fp32 layout, taking turns, fastest
  round of each) runs at
  least ``BF16_MIN_SPEEDUP`` times faster;
- fp32 in the default layout everywhere else.

``GENFW_PRECISION=fp32|bf16`` pins what `auto` means (reproducible CI, a known-bad driver).
The probe runs once per process and device; the policy carries the reason it was chosen, which
the trainer prints and writes to ``OUT/policy.json`` and ``genfw bench`` prints on its first line.

Inference (`prepare_inference`) casts the networks once to the policy's dtype and layout and runs
under autocast: ops autocast keeps in fp32 still get fp32, but no weight is re-cast per call.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch
from attrs import asdict, define

from genfw.core.errors import GenfwError

log = logging.getLogger("genfw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BF16_MIN_SPEEDUP = 1.25  # below this a bf16 default is not worth its rounding
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_probe_cache: dict[str, float | None] = {}


@define(frozen=True)
class Policy:
    precision: str        # fp32 | bf16 | fp16
    channels_last: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        layout = " + channels_last" if self.channels_last else ""
        return f"{self.precision}{layout} ({self.reason})"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the OS reports (Linux); empty where there is no such file."""
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_probe_speedup(device: torch.device | str = "cpu") -> float | None:
    """fp32 conv time (the faster layout) / bf16 channels_last conv time, each the fastest of 7
    rounds taking turns; None where bf16 math does not run. Measured once per process and device."""
    from genfw.core.bench import bf16_supported, probe_name, probe_works, take_turns

    dev = torch.device(device)
    key = str(dev)
    if key not in _probe_cache:
        if not bf16_supported(dev):
            _probe_cache[key] = None
        else:
            # a 64-channel 32 px conv: big enough for the conv kernels to matter, about a second in all
            works = probe_works(dev, cases=[("fp32", False), ("fp32", True), ("bf16", True)], matmul=False,
                                shape=(4, 64, 32), count=False)
            times = take_turns({k: w for k, (w, _) in works.items()}, warmup=2, rounds=7, device=dev)
            # each variant's fastest round: the least disturbed by neighbours on a shared machine
            # (per-round medians swung between 1.0x and 2.6x under heavy load where the minima agree)
            fp32 = min(min(times[probe_name("fp32", False)]), min(times[probe_name("fp32", True)]))
            _probe_cache[key] = fp32 / min(times[probe_name("bf16", True)])
    return _probe_cache[key]


def choose_policy(device: torch.device | str = "cpu", flags: frozenset[str] | None = None,
                  speedup: float | None | str = "probe") -> Policy:
    """What `auto` means on `device`. `flags` and `speedup` replace detection and probe (tests)."""
    dev = torch.device(device)
    pinned = os.environ.get("GENFW_PRECISION", "").strip().lower()
    if pinned and pinned != "auto":
        if pinned not in ("fp32", "bf16"):
            raise GenfwError(f"GENFW_PRECISION={pinned!r}; use fp32, bf16 or auto")
        return Policy(pinned, pinned == "bf16", "pinned by GENFW_PRECISION")
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Policy("bf16", True, f"{torch.cuda.get_device_name(dev)} supports bf16")
        return Policy("fp32", False, "this CUDA device has no bf16")
    if dev.type != "cpu":
        return Policy("fp32", False, f"no bf16 policy for {dev.type} devices")
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return Policy("bf16", True, "the CPU reports amx_bf16 (AMX tiles)")
    ratio = bf16_probe_speedup(dev) if speedup == "probe" else speedup
    extra = "avx512_bf16, " if "avx512_bf16" in flags else ""
    if ratio is None:
        return Policy("fp32", False, "no AMX, and bf16 math does not run here")
    if ratio >= BF16_MIN_SPEEDUP:
        return Policy("bf16", True, f"no AMX ({extra}no amx_bf16) but this process's bf16 channels_last conv "
                                    f"probe ran {ratio:.2f}x fp32")
    return Policy("fp32", False, f"no AMX ({extra}no amx_bf16) and this process's bf16 channels_last conv probe "
                                 f"ran only {ratio:.2f}x fp32 (< {BF16_MIN_SPEEDUP})")


def resolve(precision: str, device: torch.device | str, channels_last: bool = False) -> Policy:
    """The policy of a requested precision: `auto` asks `choose_policy`; an explicit one keeps
    the caller's channels_last choice."""
    if precision not in PRECISIONS:
        raise GenfwError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise GenfwError("precision fp16 needs a CUDA device; use bf16 on CPU")
    if precision == "auto":
        return choose_policy(dev)
    return Policy(precision, bool(channels_last), "requested")


def autocast(policy: Policy, device: torch.device | str):
    """The autocast context of a policy (fp32: none)."""
    dev = torch.device(device)
    if policy.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[policy.precision])


def cast_networks(nets, policy: Policy) -> None:
    """Cast every network's floating parameters and buffers once to the policy's dtype and
    layout (in place)."""
    dtype = _DTYPES.get(policy.precision)
    for net in nets:
        if dtype is not None:
            net.to(dtype=dtype)
        if policy.channels_last:
            net.to(memory_format=torch.channels_last)


_CAPABILITIES = ("sample", "inpaint", "reconstruct", "encode", "decode", "visualize")


def _as_float(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _as_float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float(v) for v in value)
    return value


def prepare_inference(algo, precision: str = "auto") -> Policy:
    """Make a loaded algorithm's inference calls run under a policy: its networks are cast once
    (dtype and channels_last; not re-cast per call as bare autocast would), each capability call
    (sample, inpaint, ...) runs under autocast for the ops that stay fp32, and returns fp32
    tensors. For commands that load a model for themselves (the networks stay cast)."""
    dev = algo.ctx.device
    policy = resolve(precision, dev, channels_last=precision != "fp32")
    cast_networks(algo.nets.values(), policy)
    if policy.precision != "fp32":
        for name in _CAPABILITIES:
            method = getattr(algo, name, None)
            if method is None:
                continue

            @functools.wraps(method)
            def call(*args, _method=method, **kwargs):
                with autocast(policy, dev):
                    out = _method(*args, **kwargs)
                return _as_float(out)

            setattr(algo, name, call)
    algo.inference_policy = policy
    log.info("inference precision: %s", policy.describe())
    return policy


def precision_option(fn):
    """The inference commands' --precision option."""
    import click

    return click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                        help="auto: bf16 + channels_last where this device runs it faster (AMX, CUDA bf16, or "
                             "this CPU's probe), else fp32. Networks are cast once.")(fn)
