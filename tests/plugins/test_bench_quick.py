"""Quick benchmark modes are smoke runs: they check outputs, and print no times or ratios."""
from genfw.plugins.csa.bench import csa_layer_benchmark
from genfw.plugins.lis.bench import generator_overhead


def _no_timing(row):
    return not any(k.endswith(("_ms", "_s", "_pct", "gflops")) or k in ("speedup", "ratio") for k in row)


def test_csa_layer_quick_compares_with_the_reference_style_baseline():
    rows = list(csa_layer_benchmark({}, quick=True))
    assert len(rows) == 1 and rows[0]["smoke"] and _no_timing(rows[0])
    assert rows[0]["max_abs_diff_out"] < 1e-5 and rows[0]["max_abs_diff_grad"] < 1e-4


def test_lis_overhead_quick_is_smoke_only():
    rows = list(generator_overhead({}, quick=True))
    assert [r["mode"] for r in rows] == ["eval", "train"]
    for r in rows:
        assert r["smoke"] and _no_timing(r) and r["stack_vs_naive_max_abs_diff"] < 1e-4
