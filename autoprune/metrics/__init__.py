"""Honest metrics: conv/linear MACs, parameters, measured latency and accuracy."""

from autoprune.metrics.accuracy import Accuracy, evaluate_accuracy, paired_mean_se
from autoprune.metrics.latency import (
    PROTOCOL,
    Latency,
    LatencyStats,
    RatioStats,
    measure_interleaved,
    measure_latency,
    num_threads,
    onnxruntime_runner,
    ratio,
)
from autoprune.metrics.macs import LayerCost, ModelCost, count_cost, count_macs, count_params, layer_costs

__all__ = [
    "PROTOCOL",
    "Accuracy",
    "Latency",
    "LatencyStats",
    "LayerCost",
    "ModelCost",
    "RatioStats",
    "count_cost",
    "count_macs",
    "count_params",
    "evaluate_accuracy",
    "layer_costs",
    "measure_interleaved",
    "measure_latency",
    "num_threads",
    "onnxruntime_runner",
    "paired_mean_se",
    "ratio",
]
