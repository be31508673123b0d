"""Contract checks every registered component must pass; usable on third-party plugins.

Run them on your plugin with:  GENFW_CONTRACT_PLUGINS=yourplugin pytest --pyargs genfw.testing.contract
(it fails, not skips, when that plugin is missing or failed to load), or call the `check_*` functions.
"""
from genfw.testing.checks import (
    check_algorithm, check_dataset, check_loss, check_mask, check_network, check_preset, contract_entries,
    contract_run_config, tiny_build, train_preset,
)

__all__ = ["check_network", "check_loss", "check_dataset", "check_mask", "check_preset", "check_algorithm",
           "contract_entries", "contract_run_config", "tiny_build", "train_preset"]
