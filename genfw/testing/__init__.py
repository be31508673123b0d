"""Contract checks every registered component must pass; usable on third-party plugins.

Run them on your plugin with:  pytest --pyargs genfw.testing.contract  (set
GENFW_CONTRACT_PLUGINS=yourplugin to check only yours), or call the `check_*` functions.
"""
from genfw.testing.checks import (
    check_dataset, check_loss, check_mask, check_network, check_preset, contract_entries,
    tiny_build,
)

__all__ = ["check_network", "check_loss", "check_dataset", "check_mask", "check_preset",
           "contract_entries", "tiny_build"]
