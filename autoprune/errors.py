"""Errors that autoprune raises for user mistakes.

Every :class:`AutoPruneError` says what was wrong (with the bad value) and how to fix it.
The CLI turns them into a one-line message and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class AutoPruneError(Exception):
    """Base class for errors caused by user input (bad names, files, budgets)."""


class UnknownNameError(AutoPruneError, KeyError):
    """A name (model, dataset, criterion, ...) is not in its registry."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(AutoPruneError, FileNotFoundError):
    """A dataset folder is missing or does not have the expected layout."""


class CheckpointError(AutoPruneError):
    """A checkpoint or weights file cannot be loaded safely or does not fit the model."""


class BudgetError(AutoPruneError, ValueError):
    """A pruning budget (target MACs, ratios) is malformed or cannot be met."""


class TrainingError(AutoPruneError, RuntimeError):
    """Training diverged (NaN/inf loss) or cannot proceed."""


class ExportError(AutoPruneError, RuntimeError):
    """An exported model does not compute what the PyTorch model computes (or either is not finite)."""


class RunFolderError(AutoPruneError):
    """A run folder cannot be written, or holds another run that writing would mix or overwrite."""
