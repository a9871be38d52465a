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
