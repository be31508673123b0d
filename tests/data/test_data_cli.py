import torch
from click.testing import CliRunner
from PIL import Image

from genfw.cli import cli


def test_masks_command_renders_a_grid(tmp_path):
    out = tmp_path / "m.png"
    res = CliRunner().invoke(cli, ["masks", "--kind", "irregular", "-n", "4", "--size", "32", "-o", str(out),
                                   "--set", "ratio=[0.2,0.3]"])
    assert res.exit_code == 0, res.output
    assert "hole ratio" in res.output
    with Image.open(out) as im:
        assert im.size == (4 * 34 + 2, 36)
    res = CliRunner().invoke(cli, ["masks", "--kind", "irregularr", "-o", str(out)])
    assert res.exit_code == 2 and "did you mean" in res.output


def test_weights_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    r = CliRunner()
    res = r.invoke(cli, ["weights", "list"])
    assert res.exit_code == 0 and "vgg16-imagenet" in res.output and "missing" in res.output
    torch.save({"a.weight": torch.ones(2)}, tmp_path / "inc.pth")
    res = r.invoke(cli, ["weights", "import", "inception-fid", str(tmp_path / "inc.pth")])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["weights", "list", "--json"])
    assert '"name": "inception-fid", "status": "cache"' in res.output
    res = r.invoke(cli, ["weights", "import", "inception-fid", str(tmp_path / "missing.pth")])
    assert res.exit_code == 2 and "file not found" in res.output
    monkeypatch.setenv("GENFW_OFFLINE", "1")
    res = r.invoke(cli, ["weights", "fetch", "vgg16-imagenet"])
    assert res.exit_code == 2 and "genfw weights import vgg16-imagenet" in res.output
