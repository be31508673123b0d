"""The `lis` plugin: learned input spaces (Jung, "Learning to Avoid Errors in GANs by Manipulating
Input Spaces"): LIS modules, the reference WN/TPReLU networks, G-LIS, R-separate and R-iterative."""
__version__ = "0.1.0"
