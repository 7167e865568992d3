"""The ``autoprune`` command line."""

from autoprune.cli.app import app, main

__all__ = ["app", "main"]
