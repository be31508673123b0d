"""The benchmark harness: rotations with a control copy and probes, ratio statistics."""
import pytest

from genfw.core.bench import probe_name, probe_works, ratio_stats, rotation


def test_ratio_stats_hand_computed():
    assert ratio_stats([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == {"median": 3.0, "min": 2.0, "max": 4.0}


def test_rotation_takes_turns_with_control_and_probes():
    order = []
    works = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    probes = probe_works("cpu", quick=True, cases=[("fp32", True)], matmul=True)
    res = rotation(works, warmup=1, rounds=3, probes=probes, control="a")
    # a, b and a's control copy alternate call by call, 1 warm-up + 3 timed rounds
    assert order == ["a", "b", "a"] * 4
    assert set(res["times"]) == {"a", "b"} and all(len(v) == 3 for v in res["times"].values())
    assert set(res["control"]) == {"median", "min", "max"} and res["control"]["min"] <= res["control"]["max"]
    assert set(res["probe_gflops"]) == {probe_name("fp32", True), "matmul:fp32"}
    assert all(v > 0 for v in res["probe_gflops"].values())


def test_probe_flops_are_counted_per_layout():
    probes = probe_works("cpu", quick=True, cases=[("fp32", False), ("fp32", True)], matmul=False)
    flops = {name: f for name, (_, f) in probes.items()}
    # 3x3 conv 32 -> 32 on 4 x 32 x 32 x 32: forward 2*N*C*C*9*H*W, backward twice that (input + weight)
    expected = 3 * 2 * 4 * 32 * 32 * 9 * 32 * 32
    assert flops == {probe_name("fp32", False): pytest.approx(expected, rel=0.01),
                     probe_name("fp32", True): pytest.approx(expected, rel=0.01)}
