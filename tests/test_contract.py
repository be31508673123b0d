"""Every registered component passes the shipped contract tests (timm-style, registry-parametrised)."""
from genfw.testing.contract import (  # noqa: F401 - collected by pytest
    test_algorithm_contract, test_dataset_contract, test_loss_contract, test_mask_contract, test_network_contract,
    test_plugin_loaded, test_preset_contract,
)
