"""`dataset=custom`: the user's own data, `dataset.target=my_pkg.data:load` (+ `dataset.kwargs`).

The callable is called with `**dataset.kwargs` and returns the official training and test sets,
in any of these forms:

    (train, test)                      each a torch Dataset of (input, label) pairs or an (x, y) pair
    {"train": ..., "test": ...}        the same as a dict
    (x_train, y_train, x_test, y_test) tensors

Inputs are images (N, C, H, W) or (N, H, W) (one channel), uint8 pixels or floats, or vectors
(N, F), which become (N, F, 1, 1) so that each feature is a channel. Labels are integers
0..C-1 (C = `dataset.num_classes`, or one more than the largest label). From there on it is a
dataset like MNIST or CIFAR (data/tensor_source.py): held on the run's device, split 9/1 into
train/validation with the seed, normalised per channel with the training part's statistics,
and augmented with pad-4 crop + flip if `dataset.augment=true`. A torch Dataset is read once,
item by item, into memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from sparse_exp.config.schema import DatasetConfig, register_schema
from sparse_exp.data import DATASETS
from sparse_exp.data.base import Data
from sparse_exp.data.tensor_source import build_tensor_data
from sparse_exp.errors import ConfigError
from sparse_exp.config.target import import_target


@register_schema("dataset", "custom")
@dataclass
class CustomDatasetConfig(DatasetConfig):
    name: str = "custom"
    target: Optional[str] = None  # module:function returning the train and test sets
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the callable
    num_classes: Optional[int] = None  # null: 1 + the largest label


def _pair(part, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) tensors of one split, from an (x, y) pair or a Dataset of (input, label) items."""
    if isinstance(part, (tuple, list)) and len(part) == 2 and all(isinstance(t, torch.Tensor) for t in part):
        x, y = part
    elif hasattr(part, "__getitem__") and hasattr(part, "__len__"):
        items = [part[i] for i in range(len(part))]
        if not items:
            raise ConfigError(f"dataset.target: the {what} set is empty")
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.as_tensor([int(item[1]) for item in items])
    else:
        raise ConfigError(f"dataset.target: the {what} set is a {type(part).__name__}; give an (x, y) pair of tensors or a torch Dataset")
    x = torch.as_tensor(x)
    if x.dim() == 2:
        x = x[:, :, None, None]
    elif x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4:
        raise ConfigError(f"dataset.target: {what} inputs of shape {tuple(x.shape)}; give (N, C, H, W), (N, H, W) or (N, F)")
    if x.dtype != torch.uint8:
        x = x.float()
    y = torch.as_tensor(y).long().reshape(-1)
    if len(y) != len(x):
        raise ConfigError(f"dataset.target: {len(x)} {what} inputs but {len(y)} labels")
    return x, y


def split_sets(out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) from what the callable returned (see the module doc)."""
    if isinstance(out, dict) and {"train", "test"} <= set(out):
        train, test = out["train"], out["test"]
    elif isinstance(out, (tuple, list)) and len(out) == 4:
        train, test = (out[0], out[1]), (out[2], out[3])
    elif isinstance(out, (tuple, list)) and len(out) == 2:
        train, test = out
    else:
        raise ConfigError("dataset.target must return (train, test), {'train': ..., 'test': ...} or "
                          f"(x_train, y_train, x_test, y_test); got a {type(out).__name__}")
    return (*_pair(train, "training"), *_pair(test, "test"))


@DATASETS.register("custom")
def build_custom(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    fn = import_target(cfg.target, "dataset.target")
    kwargs = cfg.kwargs
    kwargs = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs or {})
    train_x, train_y, test_x, test_y = split_sets(fn(**kwargs))
    if tuple(train_x.shape[1:]) != tuple(test_x.shape[1:]):
        raise ConfigError(f"dataset.target: training inputs {tuple(train_x.shape[1:])} and test inputs "
                          f"{tuple(test_x.shape[1:])} differ in shape")
    num_classes = cfg.num_classes or int(max(train_y.max(), test_y.max())) + 1
    if num_classes < 2:
        raise ConfigError(f"dataset.num_classes must be at least 2; got {num_classes}")
    return build_tensor_data(
        "custom", train_x, train_y, test_x, test_y, num_classes=num_classes, val_fraction=cfg.val_fraction,
        pad=4 if cfg.augment else 0, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed,
        device=device, origin=str(cfg.target),
    )
