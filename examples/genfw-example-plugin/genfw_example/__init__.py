"""Example third-party genfw plugin."""
__version__ = "0.1.0"
