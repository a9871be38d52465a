"""The papers' seeded 9/1 split of a training set into training and validation parts.

val_fraction = 0 trains on the whole training set with no validation part: the ImageNet columns
of the papers train on all of ILSVRC2012's training folder and report the official validation
set (thesis appendix A.1; IP appendix, ImageNet paragraph), so there is nothing to select an
epoch on and the trainer reports the final epoch (sparse_exp/training/trainer.py)."""
from __future__ import annotations

import torch

from sparse_exp.errors import ConfigError
from sparse_exp.seeding import generator


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) index tensors of a training set of n samples, each sorted ascending.

    The permutation comes from its own stream (seed, "split"), so the split depends on the run seed
    only and never on how other streams are consumed. Both parts are sorted so the validation set
    is evaluated in file order and the stored training tensor keeps the original layout.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction must lie in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise ConfigError(
            f"dataset.val_fraction={val_fraction} leaves {n - n_val} training and {n_val} validation "
            f"samples of {n}; both parts need at least one"
        )
    perm = torch.randperm(n, generator=generator(seed, "split"))
    return perm[n_val:].sort().values, perm[:n_val].sort().values
