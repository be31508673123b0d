import json

import pytest
from click.testing import CliRunner
from PIL import Image

import genfw.registry
from genfw.cli import cli


@pytest.fixture
def use_registry(registry, monkeypatch):
    monkeypatch.setattr(genfw.registry, "get_registry", lambda reload=False: registry)
    return registry


def test_bench_quick_prints_json_lines(use_registry):
    res = CliRunner().invoke(cli, ["bench", "trivial", "--quick", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.strip().splitlines()]
    assert lines[0]["name"] == "machine" and lines[0]["conv_gflops"] > 0 and lines[0]["matmul_gflops"] > 0
    assert lines[1]["benchmark"] == "enginetest.trivial" and lines[1]["value"] == 1.0
    from genfw.core.bench import bf16_supported

    if bf16_supported("cpu"):  # the bf16 probe and its ratio to the fp32 probe come along
        m = lines[0]
        assert m["conv_bf16_gflops"] > 0
        assert m["conv_bf16_over_fp32"] == pytest.approx(m["conv_bf16_gflops"] / m["conv_gflops"], rel=0.01)


def test_count_flops_and_measure():
    import torch

    from genfw.core.bench import count_flops, measure

    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    assert measure(lambda: a @ b, warmup=0, iters=3) > 0


def test_sample_command(use_registry, run_cfg, tmp_path):
    from genfw.core.trainer import train

    cfg, resolved = run_cfg(steps=1)
    train(cfg, resolved, use_registry, progress=False)
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(cli, ["sample", str(tmp_path / "run"), "-n", "4", "-o", str(out), "--seed", "1",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        assert im.size == (4 * 10 + 2, 12)  # 4 images of 8 px with 2 px padding, one row
    res = CliRunner().invoke(cli, ["sample", str(tmp_path / "run"), "-o", str(out), "--lis-steps", "2"])
    # a model without LIS modules refuses the option instead of writing a plain grid
    assert res.exit_code == 2 and "has no LIS modules" in res.output, res.output
    res = CliRunner().invoke(cli, ["sample", str(tmp_path / "nothing"), "-o", str(out)])
    assert res.exit_code == 2 and "no such run" in res.output


def test_sample_refuses_algorithm_without_sampling(use_registry, run_cfg, tmp_path, monkeypatch):
    from genfw.core.gan import GANAlgorithm
    from genfw.core.trainer import train

    cfg, resolved = run_cfg(steps=1)
    train(cfg, resolved, use_registry, progress=False)
    monkeypatch.setattr(GANAlgorithm, "capabilities", lambda self: {"reconstruct"})
    res = CliRunner().invoke(cli, ["sample", str(tmp_path / "run"), "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "cannot sample" in res.output
