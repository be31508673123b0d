"""Evaluation as papers report it: fixed named mask sets, LPIPS, FID on completions, results folders
and the paper-table presets (see docs/metrics.md)."""
