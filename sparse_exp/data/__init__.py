"""Dataset registry: each entry builds a `Data` (see base.py) from a dataset config.

Importing this package registers every dataset: mnist, fashion_mnist (mnist.py), cifar10,
cifar100 (cifar.py), tiny_imagenet, imagenet (imagenet.py), synthetic (synthetic.py) and the
user's own data, custom (custom.py).
"""
from sparse_exp.data.base import Batch, BatchSource, Data
from sparse_exp.registry import Registry

DATASETS: Registry = Registry("dataset")

# imported after DATASETS exists: each module registers its builders on import
from sparse_exp.data import cifar, custom, imagenet, mnist, synthetic  # noqa: E402,F401

__all__ = ["DATASETS", "Batch", "BatchSource", "Data"]
