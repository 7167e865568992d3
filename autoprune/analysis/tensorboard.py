"""TensorBoard logging of searches, sampling runs and training epochs.

Usage::

    logger = TensorBoardLogger(run_dir / "tensorboard")
    run_search(searcher, evaluator, config, on_trial=logger.on_trial)
    logger.log_history(history, prefix="finetune")   # a TrainHistory, per epoch
    logger.close()

then ``tensorboard --logdir run_dir/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from autoprune.errors import AutoPruneError
from autoprune.search.base import Trial
from autoprune.training import TrainHistory


class TensorBoardLogger:
    """Writes per-trial and per-epoch scalars to a TensorBoard event folder.

    Per finished trial (step = trial number): ``trial/accuracy``, ``trial/macs_ratio``, ``trial/loss``
    and ``search/best_accuracy`` (best complete, feasible trial so far). Failed trials only advance the
    step; pruned ones log their partial accuracy under ``trial/pruned_accuracy``.

    Args:
        log_dir: The event folder (created if missing).

    Raises:
        AutoPruneError: the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            raise AutoPruneError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer: Any = SummaryWriter(log_dir=str(self.log_dir))
        self.best: float | None = None

    def on_trial(self, trial: Trial) -> None:
        """Log one finished trial; pass as ``run_search(..., on_trial=logger.on_trial)``."""
        r = trial.result
        if r is None:
            return
        step = trial.number
        if trial.state == "pruned":
            self.writer.add_scalar("trial/pruned_accuracy", r.accuracy, step)
            return
        self.writer.add_scalar("trial/accuracy", r.accuracy, step)
        self.writer.add_scalar("trial/macs_ratio", r.macs_ratio, step)
        self.writer.add_scalar("trial/loss", r.loss, step)
        if trial.feasible and (self.best is None or r.accuracy > self.best):
            self.best = r.accuracy
        if self.best is not None:
            self.writer.add_scalar("search/best_accuracy", self.best, step)
        self.writer.flush()  # callers may never close the logger; a flush per trial is cheap

    def log_history(self, history: TrainHistory, *, prefix: str = "train") -> None:
        """Per-epoch ``{prefix}/train_loss`` and ``{prefix}/val_accuracy`` of a finished training run."""
        for epoch, loss in enumerate(history.train_loss):
            self.writer.add_scalar(f"{prefix}/train_loss", loss, epoch + 1)
        for epoch, acc in enumerate(history.val_accuracy):
            self.writer.add_scalar(f"{prefix}/val_accuracy", acc, epoch + 1)

    def log_scalars(self, values: dict[str, float], step: int = 0) -> None:
        """Any other scalars (final accuracies, correlations); ``None`` values are skipped."""
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.flush()
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: The name the search command uses.
TrialLogger = TensorBoardLogger
