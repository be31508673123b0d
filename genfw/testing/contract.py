"""Contract tests parametrised over the registry: the way to test a genfw plugin.

    GENFW_CONTRACT_PLUGINS=yourplugin pytest --pyargs genfw.testing.contract

A selected plugin that is not installed, mistyped, disabled, shadowed or failed to load fails the
run with the load error; every network, loss, dataset, mask, preset and algorithm it registered is
checked (algorithms run one step, are saved and resumed).
"""
import os

import pytest

from genfw.core.errors import suggest
from genfw.registry import NETWORK_KINDS, loaded
from genfw.testing.checks import (
    check_algorithm, check_dataset, check_loss, check_mask, check_network, check_preset, contract_entries,
)

_STATE = loaded(allow_failures=True)
_REG = _STATE.registry
_SELECTED = [p.strip() for p in os.environ.get("GENFW_CONTRACT_PLUGINS", "").split(",") if p.strip()]


def _params(kinds):
    entries = contract_entries(_REG, kinds)
    return [pytest.param(e, id=e.name) for e in entries] or [pytest.param(None, id="none")]


def _run(check, entry):
    if entry is None:
        pytest.skip("no component of this kind in the selected plugins")
    check(_REG, entry)


@pytest.mark.parametrize("plugin", _SELECTED or ["(all)"])
def test_plugin_loaded(plugin):
    """The selected plugins exist and loaded; with none selected, every installed plugin loaded."""
    infos = _STATE.plugins
    if plugin == "(all)":
        bad = [f"{p.name} ({p.status}): {p.error}" for p in infos if p.failed]
        assert not bad, "plugins failed to load: " + "; ".join(bad)
        return
    mine = [p for p in infos if p.name == plugin]
    if not mine:
        names = sorted({p.name for p in infos})
        pytest.fail(f"plugin {plugin!r} is not installed{suggest(plugin, names)}; installed: {', '.join(names)} "
                    "(check GENFW_CONTRACT_PLUGINS and the entry point name)", pytrace=False)
    ok = [p for p in mine if p.status == "ok"]
    if not ok:
        def state(p):
            return "failed to load" if p.status == "failed" else f"is {p.status}"

        pytest.fail("; ".join(f"plugin {plugin!r} from {p.dist or '?'} {state(p)}: {p.error}" for p in mine),
                    pytrace=False)
    assert ok[0].components, f"plugin {plugin!r} loaded but registered no component"


@pytest.mark.parametrize("entry", _params(NETWORK_KINDS))
def test_network_contract(entry):
    _run(check_network, entry)


@pytest.mark.parametrize("entry", _params(["loss"]))
def test_loss_contract(entry):
    _run(check_loss, entry)


@pytest.mark.parametrize("entry", _params(["dataset"]))
def test_dataset_contract(entry):
    _run(check_dataset, entry)


@pytest.mark.parametrize("entry", _params(["mask"]))
def test_mask_contract(entry):
    _run(check_mask, entry)


@pytest.mark.parametrize("entry", _params(["preset"]))
def test_preset_contract(entry):
    _run(check_preset, entry)


@pytest.mark.parametrize("entry", _params(["algorithm"]))
def test_algorithm_contract(entry):
    _run(check_algorithm, entry)
