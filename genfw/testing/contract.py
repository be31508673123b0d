"""Contract tests parametrised over the registry: `pytest --pyargs genfw.testing.contract`."""
import pytest

from genfw.registry import NETWORK_KINDS, get_registry
from genfw.testing.checks import (
    check_dataset, check_loss, check_mask, check_network, check_preset, contract_entries,
)

_REG = get_registry()


def _params(kinds):
    entries = contract_entries(_REG, kinds)
    return [pytest.param(e, id=e.name) for e in entries] or [pytest.param(None, id="none")]


def _run(check, entry):
    if entry is None:
        pytest.skip("no component of this kind in the selected plugins")
    check(_REG, entry)


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
