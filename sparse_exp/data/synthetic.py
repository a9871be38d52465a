"""A learnable synthetic dataset for smoke tests and benchmarks (no files needed).

Every class c has a fixed random template T_c; a sample of class c is `a * T_c + noise` with a
random amplitude a in [0.5, 1.5] and unit Gaussian noise, so even a linear model's accuracy rises
within a few steps. The images come from a fixed data seed (derive_seed(0, "synthetic")), the same
for every run seed, like a real dataset on disk; the split, order and augmentation follow the run
seed exactly as for the real datasets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sparse_exp.config.schema import DatasetConfig, register_schema
from sparse_exp.data import DATASETS
from sparse_exp.data.base import Data
from sparse_exp.data.tensor_source import build_tensor_data
from sparse_exp.errors import ConfigError
from sparse_exp.seeding import generator

DATA_SEED_STREAM = (0, "synthetic")  # generator(*DATA_SEED_STREAM): independent of the run seed


@register_schema("dataset", "synthetic")
@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    augment: bool = False
    shape: list[int] = field(default_factory=lambda: [3, 32, 32])  # (C, H, W), CIFAR-10 by default
    num_classes: int = 10
    size: int = 1000  # training set including the validation part
    test_size: int = 200


def make_synthetic(shape, num_classes: int, size: int, test_size: int):
    """(train_x, train_y, test_x, test_y): float32 images of `shape` and int64 labels."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"dataset.shape must be three positive integers [C, H, W], got {list(shape)}")
    if num_classes < 2:
        raise ConfigError(f"dataset.num_classes must be at least 2, got {num_classes}")
    if size < 2 or test_size < 1:
        raise ConfigError(f"dataset.size must be >= 2 and dataset.test_size >= 1, got {size} and {test_size}")
    gen = generator(*DATA_SEED_STREAM)
    templates = torch.randn((num_classes, *shape), generator=gen)
    n = size + test_size
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    amplitude = (0.5 + torch.rand(n, generator=gen)).view(n, 1, 1, 1)
    images = amplitude * templates[labels] + torch.randn((n, *shape), generator=gen)
    return images[:size], labels[:size], images[size:], labels[size:]


@DATASETS.register("synthetic")
def build_synthetic(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    train_x, train_y, test_x, test_y = make_synthetic(cfg.shape, cfg.num_classes, cfg.size, cfg.test_size)
    return build_tensor_data(
        "synthetic",
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=cfg.num_classes,
        val_fraction=cfg.val_fraction,
        pad=4 if cfg.augment else 0,  # the CIFAR augmentation, applied to the (float) images
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        device=device,
        origin=f"templates seeded {DATA_SEED_STREAM}, shape {list(train_x.shape[1:])}",
    )
