"""Benchmark harness: the machine's own throughput, timing and FLOP-counting helpers.

Benchmarks (kind `benchmark`) are ``fn(machine, quick) -> iterable of dicts``. `machine` is the
first line `genfw bench` prints: device, threads, the precision policy chosen for this device (and
why), and in full mode an overview of the probes. Numbers a benchmark reports come from its own
rotation (`rotation`): its variants, a control copy of one of them (A vs A: the noise floor) and
the machine probes that match its precisions and layouts all take turns call by call, so a slow
spell of a shared machine hits all of them alike and "fraction of the probe" compares one moment.
Ratios are medians over rounds of per-round ratios, with their range.

Quick mode (``--quick``) is a smoke run: benchmarks print only that their code ran and gave
matching outputs, never times or ratios (a few calls on a shared machine are noise).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from genfw.core.errors import GenfwError


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], warmup: int = 2, iters: int = 5, device: str | torch.device | None = None) -> float:
    """Median wall seconds of one call of `fn` (CUDA work is synchronised when `device` is CUDA)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def turn_orders(n: int) -> list[list[int]]:
    """Orders for n works taking turns, cycled through turn by turn: a Williams square, in which
    every work directly follows every other equally often (n orders for even n, 2n for odd).

    Why: what a work leaves behind (a cold cache, memory it freed) slows whichever work runs next.
    With one fixed order, or its rotations (they keep every neighbour), the same work always pays,
    and a ratio of two works carries the order rather than the works."""
    if n < 2:
        return [list(range(n))]
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(k + r) % n for k in first] for r in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


def take_turns(works: dict[str, Callable[[], Any]], warmup: int, rounds: int,
               device: str | torch.device | None = None) -> dict[str, list[float]]:
    """Wall seconds of each call of each work, the works taking turns call by call (after `warmup`
    untimed turns): a slow spell of a shared machine then hits every variant alike, so their ratios
    are measured side by side. The order changes from turn to turn (`turn_orders`), so that each
    work follows each other equally often."""
    times: dict[str, list[float]] = {key: [] for key in works}
    keys = list(works)
    orders = turn_orders(len(keys))
    for turn in range(warmup + rounds):
        for key in (keys[i] for i in orders[turn % len(orders)]):
            work = works[key]
            _sync(device)
            t0 = time.perf_counter()
            work()
            _sync(device)
            if turn >= warmup:
                times[key].append(time.perf_counter() - t0)
    return times


class _FlopCount(TorchDispatchMode):
    """torch's FLOP formulas without FlopCounterMode's module tracker, whose backward hooks break
    steps that call torch.autograd.grad (IntroVAE's latent gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of `fn` (forward and whatever backward it runs), by torch's FLOP formulas
    (torch.utils.flop_counter: matmuls, convolutions, attention and their backward)."""
    with _FlopCount() as counter:
        fn()
    return counter.total


def conv_probes(device: str | torch.device = "cpu", quick: bool = False,
                dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> dict[torch.dtype, float]:
    """3x3 conv forward + backward GFLOP/s of this machine per dtype (channels_last).

    Best of three medians, the dtypes taking turns round by round: on a shared machine one median
    can catch a neighbour's burst, and a slow spell then hits every dtype rather than one of them.
    """
    n, c, s = (4, 32, 32) if quick else (8, 64, 64)
    fmt = torch.channels_last
    works = {}
    for dtype in dtypes:
        x = torch.randn(n, c, s, s, device=device, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
        conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device=device, dtype=dtype, memory_format=fmt)
        works[dtype] = (lambda conv=conv, x=x: conv(x).sum().backward())
    flops = {dtype: count_flops(work) for dtype, work in works.items()}
    best = {dtype: float("inf") for dtype in dtypes}
    for _ in range(1 if quick else 3):
        for dtype, work in works.items():
            sec = measure(work, warmup=1 if quick else 3, iters=3 if quick else 10, device=device)
            best[dtype] = min(best[dtype], sec)
    return {dtype: flops[dtype] / best[dtype] / 1e9 for dtype in dtypes}


def conv_gflops(device: str | torch.device = "cpu", quick: bool = False,
                dtype: torch.dtype = torch.float32) -> float:
    """3x3 conv forward + backward GFLOP/s of this machine in `dtype` (channels_last)."""
    return conv_probes(device, quick, (dtype,))[dtype]


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 math runs here (CUDA: the GPU says; CPU: a bf16 matmul works)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        a = torch.randn(8, 8, dtype=torch.bfloat16, device=dev)
        return bool(torch.isfinite(a @ a).all())
    except RuntimeError:
        return False


def matmul_gflops(device: str | torch.device = "cpu", quick: bool = False) -> float:
    """fp32 square matmul throughput of this machine."""
    n = 256 if quick else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sec = min(measure(lambda: a @ b, warmup=1 if quick else 3, iters=3 if quick else 10, device=device)
              for _ in range(1 if quick else 3))  # best of three medians, as for the conv probe
    return 2 * n ** 3 / sec / 1e9


PROBE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def probe_works(device: str | torch.device = "cpu", quick: bool = False,
                precisions: Iterable[str] = ("fp32", "bf16"), layouts: Iterable[bool] = (False, True),
                matmul: bool = True, cases: Iterable[tuple[str, bool]] | None = None,
                shape: tuple[int, int, int] | None = None,
                count: bool = True) -> dict[str, tuple[Callable[[], Any], int]]:
    """The machine probes as (work, FLOPs) to put into a benchmark's rotation: a 3x3 conv forward +
    backward per precision and layout ("conv:bf16:channels_last", ...; `cases` picks pairs) and an
    fp32 matmul. `shape` = (batch, channels, size) of the conv probe; count=False skips the FLOP
    count (0), for callers that need only time ratios."""
    dev = torch.device(device)
    n, c, s = shape or ((4, 32, 32) if quick else (8, 64, 64))
    works: dict[str, tuple[Callable[[], Any], int]] = {}
    pairs = list(cases) if cases is not None else [(p, cl) for p in precisions for cl in layouts]
    for precision, cl in pairs:
        if precision == "bf16" and not bf16_supported(dev):
            continue
        dtype = PROBE_DTYPES[precision]
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = torch.randn(n, c, s, s, device=dev, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
        conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device=dev, dtype=dtype, memory_format=fmt)
        work = (lambda conv=conv, x=x: conv(x).sum().backward())
        works[probe_name(precision, cl)] = (work, count_flops(work) if count else 0)
    if matmul:
        m = 256 if quick else 1024
        a, b = torch.randn(m, m, device=dev), torch.randn(m, m, device=dev)
        works["matmul:fp32"] = ((lambda: a @ b), 2 * m ** 3)
    return works


def probe_name(precision: str, channels_last: bool) -> str:
    return f"conv:{precision}:{'channels_last' if channels_last else 'contiguous'}"


# A variant whose conv probe runs below this fraction of fp32's (same layout) is not timed: on a
# CPU without bf16 instructions the library falls back to reference bf16 kernels (seen at 0.02-0.05x
# fp32 contiguous, 0.12-0.15x channels_last), and one 256 px IntroVAE step would take minutes.
SLOW_VARIANT = 0.25
_slow_cache: dict = {}


def slow_variants(device: str | torch.device, pairs: Iterable[tuple[str, bool]]) -> dict[tuple[str, bool], str]:
    """The (precision, channels_last) pairs of `pairs` that run too slowly here to benchmark,
    each with the reason a benchmark prints in its `skipped` row. fp32 is never skipped; on CPU a
    small conv probe (32 ch, 32 px, forward + backward) of each pair takes turns with fp32 in the
    same layout, and the fastest of 3 rounds counts. Measured once per process and device."""
    dev = torch.device(device)
    out: dict[tuple[str, bool], str] = {}
    for precision, cl in pairs:
        if precision == "fp32" or dev.type != "cpu" or not bf16_supported(dev):
            continue
        key = (str(dev), precision, cl)
        if key not in _slow_cache:
            works = probe_works(dev, cases=[("fp32", cl), (precision, cl)], matmul=False, shape=(4, 32, 32),
                                count=False)
            times = take_turns({k: w for k, (w, _) in works.items()}, warmup=1, rounds=3, device=dev)
            _slow_cache[key] = min(times[probe_name("fp32", cl)]) / min(times[probe_name(precision, cl)])
        speed = _slow_cache[key]
        if speed < SLOW_VARIANT:
            layout = "channels_last" if cl else "contiguous"
            out[(precision, cl)] = (f"{precision} {layout} conv probe ran {speed:.2f}x fp32 {layout} here "
                                    f"(< {SLOW_VARIANT}): not timed, each call would take over {1 / SLOW_VARIANT:g}x fp32's")
    return out


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Median and range over rounds of num[i] / den[i] (times of two works in the same rounds)."""
    r = [a / b for a, b in zip(num, den) if b > 0]
    return {"median": round(statistics.median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}


def rotation(works: dict[str, Callable[[], Any]], warmup: int, rounds: int, *,
             probes: dict[str, tuple[Callable[[], Any], int]] | None = None, control: str | None = None,
             device: str | torch.device | None = None) -> dict[str, Any]:
    """`works`, a control copy of works[control] and the probes, taking turns call by call.

    Returns {"times": {name: [seconds per round]}, "control": ratio_stats of the work against
    its copy (the noise floor of every ratio here), "probe_gflops": {probe: median GFLOP/s}}."""
    turn = dict(works)
    if control is not None:
        turn[f"{control}#control"] = works[control]
    for name, (work, _) in (probes or {}).items():
        turn[f"probe:{name}"] = work
    times = take_turns(turn, warmup, rounds, device)
    out: dict[str, Any] = {"times": {k: times[k] for k in works}}
    if control is not None:
        out["control"] = ratio_stats(times[f"{control}#control"], times[control])
    out["probe_gflops"] = {name: round(flops / statistics.median(times[f"probe:{name}"]) / 1e9, 2)
                           for name, (_, flops) in (probes or {}).items()}
    return out


def machine_info(device: str | torch.device = "cpu", quick: bool = False) -> dict:
    from genfw.core.precision import choose_policy

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    policy = choose_policy(dev)
    info = {"name": "machine", "device": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "policy": policy.as_dict()}
    if quick:  # a smoke run: no throughput numbers
        return info
    dtypes = (torch.float32, torch.bfloat16) if bf16_supported(dev) else (torch.float32,)
    conv = conv_probes(dev, quick, dtypes)
    info.update({"conv_gflops": round(conv[torch.float32], 3), "matmul_gflops": round(matmul_gflops(dev, quick), 3)})
    if torch.bfloat16 in conv:
        # bf16 speed of the same probe conv; a network's own layers can gain more or less (their
        # shapes decide), so a benchmark that states a bf16 ceiling measures its own layers
        info["conv_bf16_gflops"] = round(conv[torch.bfloat16], 3)
        info["conv_bf16_over_fp32"] = round(conv[torch.bfloat16] / conv[torch.float32], 3)
    return info


def _select(registry, name: str) -> list:
    """A benchmark name, or a plugin name meaning all of that plugin's benchmarks (`genfw bench lis`)."""
    of_plugin = [e for e in registry.entries("benchmark") if e.plugin == name]
    return of_plugin or [registry.get(name, kind="benchmark")]


KEEP_FREED = 1 << 30  # bytes of free memory at the heap's top that glibc keeps rather than trims
MMAP_ABOVE = 32 << 20  # blocks at least this big get their own mapping (glibc's largest setting)


def keep_freed_memory() -> str:
    """Tell glibc's malloc to keep freed heap memory for reuse instead of handing it back to the
    system at the next `free`; returns what the harness now runs with (the machine line says it).

    Why: glibc trims the heap's top lazily, inside whichever `free` comes next. When works take
    turns, the memory one work let go of (a baseline's thousands of temporaries) is handed back
    inside the next work's timing: measured on a 2-core Zen 4, 1.3 ms of it landed in the 2 ms
    CSA layer call that followed its baseline. With trimming off no work pays for another's frees.
    Other allocators (jemalloc, tcmalloc, non-Linux) are left as they are."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's name: elsewhere an OSError, and nothing changes
        # M_MMAP_THRESHOLD (-3) first: a fixed trim threshold also stops glibc raising the mmap
        # threshold itself, and a tensor mapped and unmapped on every call pays its page faults
        if not (libc.mallopt(-3, MMAP_ABOVE) and libc.mallopt(-1, KEEP_FREED)):  # -1: M_TRIM_THRESHOLD
            return "glibc malloc: mallopt refused, default trimming"
    except (OSError, AttributeError):
        return "not glibc: allocator unchanged"
    return (f"glibc malloc: trim threshold {KEEP_FREED >> 20} MiB, mmap threshold {MMAP_ABOVE >> 20} MiB "
            f"(freed memory is kept for reuse)")


def run_benchmarks(registry, names: Iterable[str] = (), quick: bool = False,
                   device: str | torch.device = "cpu") -> Iterable[dict]:
    """The machine line, then every dict each selected benchmark yields (tagged with its name)."""
    entries = [e for n in names for e in _select(registry, n)] if names else registry.entries("benchmark")
    # quick mode times nothing: the process's allocator is left alone (the test suite runs it)
    allocator = "unchanged (quick: no timings)" if quick else keep_freed_memory()
    machine = machine_info(device, quick)
    machine["device_type"] = torch.device(device).type
    machine["allocator"] = allocator
    yield machine
    for entry in entries:
        try:
            for rec in entry.factory(dict(machine), quick):
                yield {"benchmark": entry.name, **rec}
        except GenfwError:  # the user's mistake (a bad setting): one line and exit 2, as elsewhere
            raise
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            yield {"benchmark": entry.name, "error": f"{type(exc).__name__}: {exc}"}
