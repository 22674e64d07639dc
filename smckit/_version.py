"""The version of smckit (one place, read by the package and its plugin registry)."""

__version__ = "0.1.0"
