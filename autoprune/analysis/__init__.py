"""Analysis: layer sensitivity, plots and the HTML report of a run folder, TensorBoard logging."""

from autoprune.analysis.html import render_html, write_report
from autoprune.analysis.plots import pareto_points, plot_run, run_figures
from autoprune.analysis.rundir import RunData, TrialPoint, load_run, read_trials_csv
from autoprune.analysis.sensitivity import (
    SensitivityRow,
    SensitivityTable,
    keep_ratio_lower_bounds,
    measure_sensitivity,
    sensitivity_seed_ratios,
)
from autoprune.analysis.tensorboard import TensorBoardLogger, TrialLogger

__all__ = [
    "RunData",
    "SensitivityRow",
    "SensitivityTable",
    "TensorBoardLogger",
    "TrialLogger",
    "TrialPoint",
    "keep_ratio_lower_bounds",
    "load_run",
    "measure_sensitivity",
    "pareto_points",
    "plot_run",
    "read_trials_csv",
    "render_html",
    "run_figures",
    "sensitivity_seed_ratios",
    "write_report",
]
