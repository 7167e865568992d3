"""Honest metrics: conv/linear MACs, parameters, measured latency and accuracy."""

from autoprune.metrics.accuracy import Accuracy, evaluate_accuracy
from autoprune.metrics.latency import Latency, measure_latency, num_threads
from autoprune.metrics.macs import LayerCost, ModelCost, count_cost, count_macs, count_params, layer_costs

__all__ = [
    "Accuracy",
    "Latency",
    "LayerCost",
    "ModelCost",
    "count_cost",
    "count_macs",
    "count_params",
    "evaluate_accuracy",
    "layer_costs",
    "measure_latency",
    "num_threads",
]
