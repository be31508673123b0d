"""Every `$ genfw ...` line of docs/metrics.md's results-folder section runs as shown."""
import re
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _commands() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("<!-- eval-report:start -->"):text.index("<!-- eval-report:end -->")]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    return [line[2:] for b in blocks for line in b.splitlines() if line.startswith("$ genfw ")]


def test_the_section_shows_commands():
    cmds = _commands()
    assert any("--table csa-table2" in c for c in cmds) and any(c.startswith("genfw masks --set") for c in cmds)


@pytest.mark.slow
def test_documented_commands_run(tmp_path, monkeypatch):
    from genfw.cli import cli

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    for cmd in _commands():
        res = CliRunner().invoke(cli, shlex.split(cmd)[1:])
        assert res.exit_code == 0, (cmd, res.output)
    assert (tmp_path / "reports/csa-table2/completions.png").is_file()
    assert (tmp_path / "reports/csa-thick/per_bin.png").is_file()
    assert (tmp_path / "reports/introvae/neighbours.png").is_file()
    assert len(list((tmp_path / "masks/thick256").glob("*.png"))) == 100
