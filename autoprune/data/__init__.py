"""Datasets as train / val / test splits: the embedded digits and torchvision folders.

``val`` is always held out from the training set and feeds all search scoring and calibration;
``test`` is read only for the final report.
"""

from autoprune.data.registry import DATASETS, DatasetLoader, dataset_names, load_dataset
from autoprune.data.splits import DataSplits, LoadOptions

__all__ = ["DATASETS", "DataSplits", "DatasetLoader", "LoadOptions", "dataset_names", "load_dataset"]
