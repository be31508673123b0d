"""Named evaluation mask sets: pure functions of (name, size, index), identified by a content hash."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from genfw.core.errors import GenfwError
from genfw.core.eval import mask_sets as M


def test_hash_definition_by_hand():
    # the centre set at 8 px: rows 2..5, columns 2..5 are hole
    m = np.zeros((8, 8), dtype=bool)
    m[2:6, 2:6] = True
    payload = (8).to_bytes(4, "little") * 2 + bytes([0, 0, 0x3C, 0x3C, 0x3C, 0x3C, 0, 0])
    expected = hashlib.sha256(payload * 3).hexdigest()
    s = M.GeneratedMaskSet("center", 8, 3)
    assert np.array_equal(s.mask(0), m)
    assert s.sha256() == expected == M.content_sha256([m, m, m])


@pytest.mark.parametrize("name", sorted(M.SETS))
def test_prefix_stable_and_order_free(name):
    a = M.GeneratedMaskSet(name, 32, 12)
    b = M.GeneratedMaskSet(name, 32, 6)
    reverse = [M.GeneratedMaskSet(name, 32, 12).mask(i) for i in reversed(range(12))][::-1]
    for i in range(6):
        assert np.array_equal(a.mask(i), b.mask(i))
    assert M.content_sha256(reverse) == a.sha256()
    assert a.masks(3, 7).shape == (4, 1, 32, 32)
    assert torch.equal(a.masks(3, 7)[1, 0], torch.from_numpy(a.mask(4).astype(np.float32)))
    assert M.GeneratedMaskSet(name, 40, 6).sha256() != b.sha256()  # the size is part of the set


def test_same_hash_in_a_fresh_process_with_other_threads_and_hash_seed():
    code = ("from genfw.core.eval.mask_sets import GeneratedMaskSet as G; "
            "print(' '.join(G(n, 48, 10).sha256() for n in ('thin', 'medium', 'thick', 'irregular', 'pconv', 'rect')))")
    env = {**os.environ, "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = " ".join(M.GeneratedMaskSet(n, 48, 10).sha256() for n in ("thin", "medium", "thick", "irregular",
                                                                        "pconv", "rect"))
    assert out.stdout.strip() == here


def test_binned_sets_fill_their_bins():
    for name, bins in (("irregular", M.CSA_BINS), ("pconv", M.PCONV_BINS)):
        s = M.GeneratedMaskSet(name, 64, 2 * len(bins))
        got = [M.bin_of(r, s.bins) for r in s.ratios()]
        assert got == list(range(len(bins))) * 2, (name, s.ratios())
    tiny = M.GeneratedMaskSet("irregular", 8, 4)  # 64 pixels: bins still hit exactly
    assert [M.bin_of(r, tiny.bins) for r in tiny.ratios()] == [0, 1, 2, 3]


def test_lama_and_foam_sets_keep_their_limits():
    for name in ("thin", "medium", "thick"):
        r = np.array(M.GeneratedMaskSet(name, 64, 30).ratios())
        assert (r > 0).all() and (r <= M.MAX_TAMPER_AREA).all(), name
    # thin strokes are thinner than thick ones: fewer hole pixels per stroke outline (perimeter / area)
    def edge_share(name):
        s = M.GeneratedMaskSet(name, 128, 20)
        out = []
        for i in range(20):
            m = s.mask(i)
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out.append(edge.sum() / m.sum())
        return float(np.mean(out))
    assert edge_share("thin") > 1.5 * edge_share("thick")
    rect = np.array(M.GeneratedMaskSet("rect", 64, 40).ratios())
    assert rect.min() >= 0.04 and rect.max() <= 0.26
    assert M.GeneratedMaskSet("center", 64, 2).ratios() == [0.25, 0.25]


def test_write_then_read_folder_round_trips_hash(tmp_path):
    s = M.GeneratedMaskSet("irregular", 32, 8)
    meta = M.write_set(s, tmp_path / "set", progress=False)
    files = sorted((tmp_path / "set").glob("*.png"))
    assert len(files) == 8 and meta["sha256"] == s.sha256()
    assert json.loads((tmp_path / "set" / "maskset.json").read_text())["bin"][:4] == ["10-20%", "20-30%", "30-40%", "40-50%"]
    back = M.open_set(str(tmp_path / "set"), 32, 8)
    assert back.name == "irregular" and back.sha256() == s.sha256() and back.bins == s.bins
    assert back.provenance()["source"] == "folder"
    # resized on read: the hash is of the masks as used, so it changes with the size
    assert M.FolderMaskSet(tmp_path / "set", 16).sha256() != s.sha256()


def test_released_folder_hashed_and_binned_and_inverted(tmp_path):
    d = tmp_path / "released"
    d.mkdir()
    for i, frac in enumerate((0.05, 0.15, 0.35, 0.55)):
        arr = np.full((20, 20), 255, np.uint8)  # stored black = hole, like some released sets
        arr.flat[: int(frac * 400)] = 0
        Image.fromarray(arr).save(d / f"m{i}.png")
    with pytest.raises(GenfwError, match="inverted"):
        M.FolderMaskSet(d, 20)
    s = M.FolderMaskSet(d, 20, invert=True)
    assert [M.bin_of(r, s.bins) for r in s.ratios()] == [0, 1, 3, 5]
    assert s.count == 4 and np.array_equal(s.mask(5), s.mask(1))  # cycled past the end
    assert s.provenance()["name"] == "released"


def test_unknown_set_suggests():
    with pytest.raises(GenfwError, match="did you mean: thick"):
        M.open_set("thik", 32, 4)


def test_core_folder_masks_read_a_written_set(tmp_path):
    from genfw.registry import get_registry

    s = M.GeneratedMaskSet("thick", 32, 6)
    M.write_set(s, tmp_path / "thick", progress=False)
    gen = get_registry().build({"type": "core.folder", "root": str(tmp_path / "thick"), "flip": False}, kind="mask")
    drawn = gen(10, 32, 32, torch.Generator().manual_seed(0))
    members = {s.mask(i).tobytes() for i in range(6)}
    assert all((drawn[j, 0].numpy() > 0.5).tobytes() in members for j in range(10))
    assert gen.provenance == {"name": "thick", "size": 32, "count": 6, "sha256": s.sha256()}


def test_masks_cli_writes_a_set(tmp_path):
    from click.testing import CliRunner

    from genfw.cli import cli

    out = tmp_path / "thick256"
    res = CliRunner().invoke(cli, ["masks", "--set", "thick", "--size", "64", "-n", "5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert M.GeneratedMaskSet("thick", 64, 5).sha256() in res.output
    assert len(list(out.glob("*.png"))) == 5
    res = CliRunner().invoke(cli, ["masks", "--set", "thick", "--set", "ratio=[0.1,0.2]", "-o", str(out)])
    assert res.exit_code == 2 and "error:" in res.output
    res = CliRunner().invoke(cli, ["masks", "--set", "thik", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "did you mean: thick" in res.output


def test_maskset_generator_draws_set_members():
    from genfw.registry import get_registry

    gen = get_registry().build({"type": "core.maskset", "name": "medium", "pool": 5}, kind="mask")
    m = gen(7, 32, 32, torch.Generator().manual_seed(0))
    s = M.GeneratedMaskSet("medium", 32, 5)
    members = {s.mask(i).tobytes() for i in range(5)}
    assert m.shape == (7, 1, 32, 32) and all((x[0].numpy() > 0.5).tobytes() in members for x in m)
    with pytest.raises(Exception, match="did you mean: thick"):
        get_registry().build({"type": "core.maskset", "name": "thik"}, kind="mask")
