"""The results folder's building blocks: paper-style tables, rankings, PIL pictures."""
import json
import math

import torch
from PIL import Image

from genfw.core.eval import results
from genfw.core.eval.plots import bar_chart, labelled_grid, rank_groups


def test_per_bin_table_layout():
    rows = [("ours", {"10-20%": {"l1": 1.234, "ssim": 0.9876, "count": 3},
                      "overall": {"l1": 2.0, "ssim": float("nan"), "count": 5}}),
            ("paper", {"10-20%": {"l1": 0.72}})]
    md = results.markdown_table(["10-20%", "overall"], ["l1", "ssim"], rows, per_bin=True).splitlines()
    assert md[0] == "| metric | source | 10-20% | overall |"
    assert md[2] == "| L1 % | ours | 1.23 | 2.00 |" and md[3] == "| L1 % | paper | 0.72 | - |"
    assert md[4] == "| SSIM | ours | 0.988 | - |"  # the paper has no SSIM row
    assert md[5:] == ["| images | ours | 3 | 5 |"]


def test_overall_table_layout():
    md = results.markdown_table(["overall"], ["fid", "msssim"], [("ours", {"overall": {"fid": 12.345}}),
                                                                 ("real", {"overall": {"msssim": 0.25}})], False)
    assert md.splitlines()[2:] == ["| ours | 12.35 | - |", "| real | - | 0.2500 |"]


def test_rank_groups():
    g = rank_groups([5.0, 1.0, 3.0, 2.0, 4.0], 1, lower_is_better=True)
    assert g == {"best": [1], "median": [2], "worst": [0]}
    g = rank_groups([5.0, 1.0, 3.0, 2.0, 4.0, 0.0], 2, lower_is_better=False)
    assert g["best"] == [0, 4] and g["worst"] == [5, 1]


def test_pictures_and_json(tmp_path):
    p = bar_chart({"a": {"l1": 1.0}, "b": {"l1": float("nan")}}, ["l1"], tmp_path / "bars.png", title="t")
    assert Image.open(p).size[0] > 100
    tiles = [torch.rand(1, 16, 16), torch.rand(3, 16, 16)]
    q = labelled_grid([("row 1\nsecond line", tiles)], ["a", "b"], tmp_path / "grid.png")
    w, h = Image.open(q).size
    assert h >= 96 and w >= 190 + 2 * 96  # small tiles are scaled up to stay readable
    scores = {"overall": {"fid": float("nan"), "x": (1, 2)}, "_hidden": 1, "provenance": {"seed": 0}}
    files = results.write(tmp_path / "out", scores, "| t |", "Title", ["a warning"], [])
    data = json.loads(files[0].read_text())
    assert data == {"overall": {"fid": None, "x": [1, 2]}, "provenance": {"seed": 0}}
    md = files[1].read_text()
    assert md.startswith("# Title") and "> a warning" in md and "- seed: 0" in md
    assert math.isnan(scores["overall"]["fid"])
