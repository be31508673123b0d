"""`genfw foam filters` (the filters per level as an image grid, their mean spectral frequency) and the
`genfw bench foam` smoke run."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from genfw.plugins.foam.filters import mean_frequency


def test_mean_frequency_by_hand():
    n = 16
    x = torch.arange(n, dtype=torch.float64) / n
    assert mean_frequency(torch.full((1, 1, n, n), 0.3)) == 0.0               # constant: no structure
    three = torch.cos(2 * math.pi * 3 * x)[None, :].expand(n, n)             # 3 cycles across the image
    assert mean_frequency(three[None, None]) == pytest.approx(3.0)
    diag = torch.cos(2 * math.pi * (3 * x[None, :] + 4 * x[:, None]))        # |k| = 5
    assert mean_frequency(diag[None, None]) == pytest.approx(5.0)
    # a mix is power-weighted: amplitudes 2 (k = 1) and 1 (k = 6) -> (4 * 1 + 1 * 6) / 5
    mix = 2 * torch.cos(2 * math.pi * x)[None, :].expand(n, n) + torch.cos(2 * math.pi * 6 * x)[:, None].expand(n, n)
    assert mean_frequency(mix[None, None]) == pytest.approx(2.0)
    # in cycles per image: the same pattern sampled twice as finely scores the same
    x2 = torch.arange(2 * n, dtype=torch.float64) / (2 * n)
    fine = torch.cos(2 * math.pi * 3 * x2)[None, :].expand(2 * n, 2 * n)
    assert mean_frequency(fine[None, None]) == pytest.approx(3.0)


def _tiny_run(root, steps, first=4):
    from genfw.core.config import deep_merge, resolve_run
    from genfw.core.trainer import train
    from genfw.plugins.foam.presets import PRESETS
    from genfw.registry import get_registry

    registry = get_registry()
    raw = deep_merge(PRESETS["default"][0], {
        "out": str(root), "device": "cpu",
        "algorithm": {"generator": {"base_channels": 4, "max_channels": 8, "latent_channels": 8},
                      "discriminator": {"base_channels": 4, "max_channels": 8},
                      "first_images": first, "grow_images": [4], "stabilise_images": 4, "pool_size": 4},
        "data": {"image_size": 16, "length": 8},
        "train": {"steps": steps, "batch_size": 4, "log_every": 1, "sample_every": 0, "checkpoint_every": steps}})
    cfg, resolved = resolve_run(raw, registry)
    train(cfg, resolved, registry, progress=False)
    return root


def test_filters_command_writes_the_grid_and_frequencies(tmp_path):
    from genfw.cli import cli
    from genfw.core.images import read_image

    run = _tiny_run(tmp_path / "run", 5)     # 20 images: grown to 16 px (levels 2 and 3)
    out = tmp_path / "filters"
    res = CliRunner().invoke(cli, ["foam", "filters", str(run), "-o", str(out), "-n", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert [r["level"] for r in lines] == [2, 3] and [r["size"] for r in lines] == [8, 16]
    for r in lines:
        assert r["read_mean_frequency"] >= 0 and r["write_mean_frequency"] >= 0
        assert 0 <= r["read_mean"] <= 1 and 0 <= r["write_mean"] <= 1
    saved = json.loads((out / "filters.json").read_text())
    assert saved["levels"] == lines
    grid = read_image(out / "filters.png", channels=3)
    # rows: input, completion, then F_read and F_write per level; 3 columns of 16 px with 2 px padding
    rows, cols = 2 + 2 * 2, 3
    assert grid.shape[-2:] == (rows * 16 + (rows + 1) * 2, cols * 16 + (cols + 1) * 2)


def test_filters_command_errors_are_one_line(tmp_path):
    from genfw.cli import cli

    run = _tiny_run(tmp_path / "run", 1, first=8)     # 4 images: still at 4x4
    res = CliRunner().invoke(cli, ["foam", "filters", str(run), "-o", str(tmp_path / "f"), "--device", "cpu"])
    assert res.exit_code == 2 and "not grown past 4x4" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "f").exists()


def test_bench_quick_smoke():
    from genfw.cli import cli

    res = CliRunner().invoke(cli, ["bench", "foam", "--quick", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    rows = [r for r in recs if r.get("benchmark") == "foam.completion"]
    assert {r["size"] for r in rows} == {16, 32} and "fp32" in {r["dtype"] for r in rows}
    for r in rows:  # a smoke run: the passes ran and are finite; no ratios printed
        assert r["smoke"] and r["output_finite"] and r["seconds"] > 0 and "of_conv_probe" not in r


def test_docs_commands_complete_with_attribute_edit_and_landmarks(tmp_path):
    """The docs' `genfw complete ... --landmarks face.json --attributes Male=1` on a synthetic face."""
    import numpy as np

    from genfw.cli import cli
    from genfw.core.images import read_image, save_image
    from genfw.core.synthetic_faces import render_face

    run = _tiny_run(tmp_path / "run", 5)
    img, lm, _ = render_face(16, np.random.default_rng(5))
    face = torch.from_numpy(img).permute(2, 0, 1)
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 4:12] = 1
    save_image(face, tmp_path / "face.png")
    save_image(mask, tmp_path / "mask.png")
    (tmp_path / "face.json").write_text(json.dumps({"landmarks": lm.tolist()}))
    outs = {}
    for value in ("0", "1"):
        out = tmp_path / f"male{value}.png"
        res = CliRunner().invoke(cli, ["complete", str(run), str(tmp_path / "face.png"), str(tmp_path / "mask.png"),
                                       "-o", str(out), "--landmarks", str(tmp_path / "face.json"),
                                       "--attributes", f"Male={value}", "--device", "cpu"])
        assert res.exit_code == 0, res.output
        outs[value] = read_image(out, channels=3)
    known = (mask < 0.5).expand(3, -1, -1)
    ref = read_image(tmp_path / "face.png", channels=3)
    assert torch.equal(outs["0"][known], ref[known]) and torch.equal(outs["1"][known], ref[known])
    assert not torch.equal(outs["0"], outs["1"])          # the attribute reaches the completion


@pytest.mark.slow
def test_bench_peak_memory_of_cast_once_bf16_is_below_fp32_and_autocast():
    """The benchmark's memory rows, each a fresh process running one pass of the paper's 32 px network:
    weights cast once to bf16 (and bf16 activations) must need less than fp32, and autocast over fp32
    weights (re-cast copies on top of the fp32 weights) more than cast-once bf16."""
    from genfw.plugins.foam.bench import peak_memory

    peak = {m: peak_memory(m, 32, torch.device("cpu")) for m in ("fp32", "bf16", "bf16-autocast")}
    assert peak["bf16"] < 0.9 * peak["fp32"], peak
    assert peak["bf16-autocast"] > 1.1 * peak["bf16"], peak


@pytest.mark.parametrize("argv", [["bogus", "32"], ["fp32", "33"], ["fp32", "x"], ["fp32"], ["fp32", "32", "nodev"]])
def test_bench_memory_entry_point_refuses_bad_arguments_in_one_line(argv, capsys):
    from genfw.plugins.foam.bench import _main

    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "usage: python -m genfw.plugins.foam.bench" in err
