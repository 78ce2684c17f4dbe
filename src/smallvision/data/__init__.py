"""Data: the data-set registry, file readers and in-memory batch loading."""

from smallvision.data import datasets  # noqa: F401  (registers every data set)
from smallvision.data.datasets import DATASETS, ImageData, load_dataset
from smallvision.data.info import DatasetInfo
from smallvision.data.loader import TensorLoader, normalize, split_validation

__all__ = ["DATASETS", "DatasetInfo", "ImageData", "TensorLoader", "load_dataset", "normalize", "split_validation"]
