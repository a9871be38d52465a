"""What every dataset builder returns: batch sources for train/val/test plus scoring batches.

A `BatchSource` is deterministic in (seed, epoch): `source.epoch(e)` always yields the same batches
in the same order with the same augmentation, which is what makes a resumed run identical to an
uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence

import torch

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs float32 N x C x H x W on the run's device, int64 labels)


class BatchSource(Protocol):
    num_samples: int

    def __len__(self) -> int:
        """Number of batches that `epoch()` yields."""

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """Yield the batches of one epoch; shuffled/augmented deterministically from (seed, epoch)."""

    def set_shard(self, rank: int, world: int, lockstep: bool) -> None:
        """From now on yield only rank `rank`'s part of every batch (see `shard_bounds`)."""


def shard_bounds(num_samples: int, batch_size: int, rank: int = 0, world: int = 1, lockstep: bool = False) -> list[tuple[int, int]]:
    """Positions [lo, hi) in an epoch's sample order of this rank's part of every batch.

    One process (world 1): the batches themselves, the last partial one included. Several ranks
    (torchrun): every batch of `batch_size` samples (the global batch) is cut into `world`
    consecutive slices whose sizes differ by at most one, and rank r takes slice r. `lockstep`
    (training: every rank takes every step) skips, on every rank, a last batch with fewer samples
    than ranks (at most world - 1 samples of an epoch, logged); otherwise (evaluation) a rank just
    has no part of such a batch and nothing is dropped.
    """
    bounds = []
    for start in range(0, num_samples, batch_size):
        size = min(batch_size, num_samples - start)
        if lockstep and size < world:
            continue
        lo, hi = start + size * rank // world, start + size * (rank + 1) // world
        if hi > lo:
            bounds.append((lo, hi))
    return bounds


# score_batches(n_batches, batch_size, classes, generator) -> list of un-augmented training batches,
# drawn at random (with the given generator) from the training split, restricted to `classes` if given.
ScoreBatches = Callable[[int, int, Optional[Sequence[int]], torch.Generator], list[Batch]]


@dataclass
class Data:
    train: BatchSource  # shuffled and augmented every epoch
    val: BatchSource  # the held-out 1/10 of the training set, in order, no augmentation
    test: BatchSource  # the test set (ImageNet: the official validation set), in order
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one input as the model sees it
    score_batches: ScoreBatches
    description: str = ""  # one line for the log: where the files came from, sizes, normalisation
    # What the model's inputs are: {"mean": [...], "std": [...], "preprocess": "..."} per channel,
    # applied to pixels scaled to [0, 1]; exported with the model (export/state_dict.py)
    normalization: Optional[dict] = None
