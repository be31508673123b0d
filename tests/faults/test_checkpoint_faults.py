"""Every checkpoint file kind damaged every way: loading names the file, --resume falls back to
the previous intact checkpoint and says what it skipped."""
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import engine_toy
import harness
from genfw.cli import cli
from genfw.core import checkpoint as ck
from genfw.core.config import resolve_run
from genfw.core.trainer import train

FILES = ("networks.safetensors", "optimizers.safetensors", "optimizers.json", "algorithm.safetensors",
         "state.json")


def _truncate_half(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p):
    p.write_bytes(b"")


def _flip_middle(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x40
    p.write_bytes(bytes(b))


def _flip_header(p):  # safetensors: the first 8 bytes are the header length -> absurdly large
    b = bytearray(p.read_bytes())
    b[7] ^= 0x7F
    p.write_bytes(bytes(b))


def _garbage(p):
    p.write_bytes(b"\x00\xffnot a checkpoint\x00" * 64)


def _delete(p):
    p.unlink()


DAMAGE = {"truncated": _truncate_half, "empty": _empty, "flipped-byte": _flip_middle,
          "flipped-header": _flip_header, "garbage": _garbage, "deleted": _delete}


@pytest.fixture(scope="module")
def pristine(registry, tmp_path_factory):
    """A finished 4-step toy run with checkpoints 2 and 4."""
    root = tmp_path_factory.mktemp("pristine")
    raw = engine_toy.tiny_run(str(root / "run"), steps=4, keep_last=3)
    cfg, resolved = resolve_run(raw, registry)
    train(cfg, resolved, registry, progress=False)
    return root / "run"


def _copy(pristine, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(pristine, out)
    return out


def _resume_config(out, steps=6):
    raw = engine_toy.tiny_run(str(out), steps=steps, keep_last=3)
    return raw


@pytest.mark.parametrize("fname", FILES)
def test_damaged_file_named_on_load_and_resume_falls_back(fname, pristine, registry, use_registry, tmp_path,
                                                          capsys):
    outcomes = []
    for kind, damage in DAMAGE.items():
        out = _copy(pristine, tmp_path / kind)
        newest = out / "checkpoints" / "00000004"
        damage(newest / fname)
        label = f"{fname} {kind}"
        # a read command on the run: one line naming the damaged file (or state.json for a deleted one)
        res = CliRunner().invoke(cli, ["sample", str(out), "-n", "1", "-o", str(tmp_path / kind / "g.png"),
                                       "--device", "cpu"])
        named = fname if kind != "deleted" or fname != "state.json" else ""
        if fname == "state.json" and kind == "deleted":
            # no state.json: 00000004 is not a checkpoint at all, so the run's newest is 00000002
            outcomes.append(harness.record(label + " (sample)", "clean" if res.exit_code == 0 else "silent",
                                           res.output))
        elif fname in ("optimizers.safetensors", "optimizers.json"):
            # sampling never reads optimizer state; the damage must still stop a resume (below)
            outcomes.append(harness.record(label + " (sample)", "clean" if res.exit_code == 0 else "traceback",
                                           res.output))
        else:
            outcomes.append(harness.expect_cli_error(label + " (sample)", res, match=named))
        # --resume: skip 00000004 with a reason, continue from 00000002 to the end
        cfg, resolved = resolve_run(_resume_config(out), registry)
        capsys.readouterr()
        try:
            train(cfg, resolved, registry, resume=True, progress=False)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(harness.record(label + " (resume)", "traceback", repr(exc)))
            continue
        err = capsys.readouterr().err
        fell_back = "resumed from" in err and "00000002" in err.split("resumed from")[1].splitlines()[0]
        said_why = fname == "state.json" and kind == "deleted" or ("skipped checkpoint 00000004" in err)
        ok = fell_back and said_why and ck.verify_checkpoint(out / "checkpoints" / "00000006") is not None
        outcomes.append(harness.record(label + " (resume)", "clean" if ok else "silent", err[-400:]))
    harness.assert_clean(outcomes)


def test_damaged_latest_pointer(pristine, registry, use_registry, tmp_path, capsys):
    outcomes = []
    for kind, text in {"dotdot": "../..", "absolute": "/etc", "garbage": "\x00\xff", "empty": "",
                       "missing-dir": "00000099", "file-not-dir": "latest"}.items():
        out = _copy(pristine, tmp_path / kind)
        (out / "checkpoints" / "latest").write_bytes(text.encode("latin-1"))
        capsys.readouterr()
        found = ck.find_checkpoint(out)
        err = capsys.readouterr().err
        inside = found.parent == out / "checkpoints" and found.name == "00000004"
        warned = "warning:" in err or kind == "empty" and "warning" in err
        outcomes.append(harness.record(f"latest {kind}", "clean" if inside and warned else "silent",
                                       f"{found} {err!r}"))
    harness.assert_clean(outcomes)


def _edit_state(path, edit, keep_integrity):
    st = json.loads(path.read_text())
    edit(st)
    if not keep_integrity:
        st.pop("integrity", None)  # as an older (format 1) checkpoint would be
    path.write_text(json.dumps(st))


STATE_EDITS = {
    "step-string": lambda s: s.update(step="x"),
    "step-negative": lambda s: s.update(step=-1),
    "step-float": lambda s: s.update(step=2.5),
    "images-list": lambda s: s.update(images=[1]),
    "position-null": lambda s: s.update(data_position=None),
    "rng-missing": lambda s: s.pop("rng"),
    "rng-torch-garbage": lambda s: s["rng"].update(torch="!!!"),
    "rng-numpy-short": lambda s: s["rng"].update(numpy=[1]),
    "config-list": lambda s: s.update(config=[1, 2]),
    "not-an-object": lambda s: (s.clear(), s.update({"__list__": True})),
}


@pytest.mark.parametrize("keep_integrity", [True, False], ids=["hashed", "unhashed"])
def test_edited_state_json(keep_integrity, pristine, registry, tmp_path, capsys):
    outcomes = []
    for kind, edit in STATE_EDITS.items():
        out = _copy(pristine, tmp_path / kind)
        state = out / "checkpoints" / "00000004" / "state.json"
        _edit_state(state, edit, keep_integrity)
        if kind == "not-an-object":
            state.write_text("[1, 2, 3]")
        algo = registry.build({"type": "core.gan", **engine_toy.TINY_NETS}, kind="algorithm")
        from genfw.core.algorithm import Context

        algo.setup(Context(registry=registry, image_size=8, channels=1))
        outcomes.append(harness.expect_error(f"state.json {kind} ({'hashed' if keep_integrity else 'unhashed'})",
                                             lambda: ck.load_checkpoint(state.parent, algo), match="00000004"))
    harness.assert_clean(outcomes)


def test_non_finite_weights_with_valid_hash_refused(pristine, registry, use_registry, tmp_path):
    """A checkpoint whose hashes match but whose weights are NaN (written by an older version, or by
    a caller that skipped the guard) is refused on load, naming network and tensor."""
    out = _copy(pristine, tmp_path)
    algo, _ = ck.load_run(str(out), "cpu", registry=registry)
    with torch.no_grad():
        next(algo.nets["G"].parameters()).fill_(float("nan"))
    st = ck.read_state(out / "checkpoints" / "00000004")
    ck.save_checkpoint(out / "checkpoints", algo, step=5, images=0, data_position=5, config=st["config"],
                       context=st["context"])
    assert ck.verify_checkpoint(out / "checkpoints" / "00000005")  # the hashes are fine
    res = CliRunner().invoke(cli, ["sample", str(out), "-o", str(tmp_path / "g.png"), "--device", "cpu"])
    harness.assert_clean([harness.expect_cli_error("NaN weights, valid hash", res, match="network 'G'")])


def test_resume_into_changed_networks_stops_without_renaming(pristine, registry, tmp_path):
    """An intact checkpoint that does not fit the run (networks changed) is not "damaged": --resume
    stops with one line and sets nothing aside (an older checkpoint would not fit either)."""
    out = _copy(pristine, tmp_path)
    raw = _resume_config(out)
    raw["algorithm"]["generator"] = {**raw["algorithm"]["generator"], "base_channels": 8}
    cfg, resolved = resolve_run(raw, registry)
    outcome = harness.expect_error("resume into changed networks",
                                   lambda: train(cfg, resolved, registry, resume=True, progress=False),
                                   match="does not fit")
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    harness.assert_clean([outcome, harness.record("nothing set aside", "clean" if names == [
        "00000002", "00000004", "latest"] else "silent", str(names))])


def test_every_checkpoint_damaged_stops_and_changes_nothing(pristine, registry, tmp_path, capsys):
    out = _copy(pristine, tmp_path)
    for name in ("00000002", "00000004"):
        _flip_middle(out / "checkpoints" / name / "networks.safetensors")
    cfg, resolved = resolve_run(_resume_config(out), registry)
    outcome = harness.expect_error("all checkpoints damaged",
                                   lambda: train(cfg, resolved, registry, resume=True, progress=False),
                                   match="no usable checkpoint")
    err = capsys.readouterr().err
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    ok = names == ["00000002", "00000004", "latest"] and err.count("skipped checkpoint") == 2
    harness.assert_clean([outcome, harness.record("all damaged: reported, nothing renamed",
                                                  "clean" if ok else "silent", f"{names} {err}")])
