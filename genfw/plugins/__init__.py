"""Built-in plugins, one sub-package per paper; each uses only genfw's public API."""
