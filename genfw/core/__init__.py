"""Paper-independent core: interfaces, config, engine, checkpoints, data, metrics, weights."""
