"""The benchmark harness: rotations with a control copy and probes, ratio statistics."""
import pytest

from collections import Counter

from genfw.core.bench import probe_name, probe_works, ratio_stats, rotation, take_turns, turn_orders


def test_ratio_stats_hand_computed():
    assert ratio_stats([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == {"median": 3.0, "min": 2.0, "max": 4.0}


def test_rotation_takes_turns_with_control_and_probes():
    order = []
    works = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    probes = probe_works("cpu", quick=True, cases=[("fp32", True)], matmul=True)
    res = rotation(works, warmup=1, rounds=3, probes=probes, control="a")
    # a, b, a's control copy and the two probes take turns call by call, 1 warm-up + 3 timed
    # rounds, in the orders of turn_orders(5) (the probes do not append)
    names = ["a", "b", "a", None, None]
    assert order == [names[i] for row in turn_orders(5)[:4] for i in row if names[i]]
    assert set(res["times"]) == {"a", "b"} and all(len(v) == 3 for v in res["times"].values())
    assert set(res["control"]) == {"median", "min", "max"} and res["control"]["min"] <= res["control"]["max"]
    assert set(res["probe_gflops"]) == {probe_name("fp32", True), "matmul:fp32"}
    assert all(v > 0 for v in res["probe_gflops"].values())


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_every_work_follows_every_other_equally_often(n):
    orders = turn_orders(n)
    assert all(sorted(row) == list(range(n)) for row in orders)
    follows = Counter((row[k], row[k + 1]) for row in orders for k in range(n - 1))
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    assert set(follows) == set(pairs) and len(set(follows.values())) == 1


def test_take_turns_cycles_through_the_orders():
    order = []
    works = {k: (lambda k=k: order.append(k)) for k in "abcd"}
    times = take_turns(works, warmup=1, rounds=4)
    # 0, 1, 3, 2 and its shifts
    assert "".join(order) == "abdc" "bcad" "cdba" "dacb" "abdc"
    # times stay per work and per round, whatever the order
    assert set(times) == set("abcd") and all(len(v) == 4 for v in times.values())


def test_probe_flops_are_counted_per_layout():
    probes = probe_works("cpu", quick=True, cases=[("fp32", False), ("fp32", True)], matmul=False)
    flops = {name: f for name, (_, f) in probes.items()}
    # 3x3 conv 32 -> 32 on 4 x 32 x 32 x 32: forward 2*N*C*C*9*H*W, backward twice that (input + weight)
    expected = 3 * 2 * 4 * 32 * 32 * 9 * 32 * 32
    assert flops == {probe_name("fp32", False): pytest.approx(expected, rel=0.01),
                     probe_name("fp32", True): pytest.approx(expected, rel=0.01)}


def test_full_runs_keep_freed_memory_and_quick_runs_leave_the_allocator_alone():
    import platform
    import subprocess
    import sys

    code = "from genfw.core.bench import keep_freed_memory; print(keep_freed_memory())"
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert said.startswith("glibc malloc: trim threshold 1024 MiB, mmap threshold 32 MiB")
    else:
        assert "unchanged" in said or "refused" in said

    from genfw.core.bench import run_benchmarks
    from genfw.registry import get_registry

    machine = next(iter(run_benchmarks(get_registry(), names=["lis.generator-overhead"], quick=True)))
    assert machine["allocator"] == "unchanged (quick: no timings)"
