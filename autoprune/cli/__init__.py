"""The ``autoprune`` command line."""

from autoprune.cli import (
    analysis_cmds,  # noqa: F401  (registers `sample`, `sensitivity` and `report`)
    demo_cmd,  # noqa: F401  (registers `demo`)
    groups_cmd,  # noqa: F401  (registers `groups`)
    search_cmds,  # noqa: F401  (registers `search`)
    supernet_cmds,  # noqa: F401  (registers `supernet` and `extract`)
)
from autoprune.cli.app import app, main

__all__ = ["app", "main"]
