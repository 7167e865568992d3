"""autoprune: search-based automatic structured pruning for PyTorch models.

The public Python API in one place::

    import autoprune as ap
    splits = ap.load_dataset("digits")
    model = ap.build_model("resnet20", num_classes=10, in_channels=1)
    pruned, plan = ap.prune(model, splits.input_shape(), ap.PruneConfig(target_macs=0.5))
    # search: ap.search_supernet(supernet, space, splits, searcher="tpe", trials=100)
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it. Imported on first use, so that ``import autoprune`` (and the
#: command line's ``--help``) does not pay for torch, torchvision and scikit-learn until they are needed.
_EXPORTS: dict[str, str] = {
    "DataSplits": "autoprune.data",
    "ModelStructure": "autoprune.engine",
    "PruneConfig": "autoprune.engine",
    "PrunePlan": "autoprune.engine",
    "SEARCHERS": "autoprune.search",
    "SearchConfig": "autoprune.search",
    "SearchSpace": "autoprune.search_spaces",
    "Searcher": "autoprune.search",
    "StandardConfig": "autoprune.pipelines",
    "Supernet": "autoprune.supernet",
    "SupernetConfig": "autoprune.supernet",
    "SupernetEvaluator": "autoprune.evaluate",
    "TrainConfig": "autoprune.training",
    "apply_plan": "autoprune.engine",
    "auto_space": "autoprune.search_spaces",
    "build_model": "autoprune.models",
    "compute_plan": "autoprune.pipelines",
    "count_cost": "autoprune.metrics",
    "count_macs": "autoprune.metrics",
    "evaluate_accuracy": "autoprune.metrics",
    "export_onnx": "autoprune.engine",
    "load_checkpoint_into": "autoprune.models",
    "load_dataset": "autoprune.data",
    "load_pruned": "autoprune.engine",
    "load_space": "autoprune.search_spaces",
    "make_searcher": "autoprune.search",
    "measure_latency": "autoprune.metrics",
    "optimize_for_inference": "autoprune.engine",
    "prune": "autoprune.pipelines",
    "run_search": "autoprune.search",
    "run_standard": "autoprune.pipelines",
    "save_checkpoint": "autoprune.models",
    "search_supernet": "autoprune.pipelines.search",
    "train": "autoprune.training",
}

if TYPE_CHECKING:
    from autoprune.data import DataSplits, load_dataset
    from autoprune.engine import (
        ModelStructure,
        PruneConfig,
        PrunePlan,
        apply_plan,
        export_onnx,
        load_pruned,
        optimize_for_inference,
    )
    from autoprune.evaluate import SupernetEvaluator
    from autoprune.metrics import count_cost, count_macs, evaluate_accuracy, measure_latency
    from autoprune.models import build_model, load_checkpoint_into, save_checkpoint
    from autoprune.pipelines import StandardConfig, compute_plan, prune, run_standard
    from autoprune.pipelines.search import search_supernet
    from autoprune.search import SEARCHERS, SearchConfig, Searcher, make_searcher, run_search
    from autoprune.search_spaces import SearchSpace, auto_space, load_space
    from autoprune.supernet import Supernet, SupernetConfig
    from autoprune.training import TrainConfig, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoprune' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "SEARCHERS",
    "DataSplits",
    "ModelStructure",
    "PruneConfig",
    "PrunePlan",
    "SearchConfig",
    "SearchSpace",
    "Searcher",
    "StandardConfig",
    "Supernet",
    "SupernetConfig",
    "SupernetEvaluator",
    "TrainConfig",
    "__version__",
    "apply_plan",
    "auto_space",
    "build_model",
    "compute_plan",
    "count_cost",
    "count_macs",
    "evaluate_accuracy",
    "export_onnx",
    "load_checkpoint_into",
    "load_dataset",
    "load_pruned",
    "load_space",
    "make_searcher",
    "measure_latency",
    "optimize_for_inference",
    "prune",
    "run_search",
    "run_standard",
    "save_checkpoint",
    "search_supernet",
    "train",
]
