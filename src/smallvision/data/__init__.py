"""Data: the data-set registry, file readers and in-memory batch loading."""

from smallvision.data.datasets import DATASETS, ImageData, load_dataset
from smallvision.data.info import DatasetInfo
from smallvision.data.loader import TensorLoader, normalize, split_validation
from smallvision.registry import import_all

MODULES = import_all(__name__, __path__)  # registers every data set, plugins included (one file, one decorator)

__all__ = ["DATASETS", "DatasetInfo", "ImageData", "TensorLoader", "load_dataset", "normalize", "split_validation"]
