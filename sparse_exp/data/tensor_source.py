"""Datasets small enough to live as tensors on the run's device (MNIST family, CIFAR, synthetic).

Per-sample PIL work and a DataLoader cost far more than a LeNet or small CNN step; indexing a
resident uint8 tensor with a permutation and augmenting the whole batch with tensor ops does not
(see scripts/bench_data.py). Every random number comes from a CPU generator of its own stream
(seed, "order"/"augment", epoch), drawn for the whole epoch up front, so `epoch(e)` is the same on
CPU and CUDA and does not depend on what happened in other epochs.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch

from sparse_exp.data.augment import draw_pad_crop_flip, pad_crop_flip
from sparse_exp.data.base import Batch, Data, shard_bounds
from sparse_exp.data.scoring import draw_score_indices
from sparse_exp.data.split import split_indices
from sparse_exp.seeding import generator


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (population) of x (N, C, H, W) as float64; uint8 is scaled to [0, 1]."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), chunk):  # chunks keep the float64 copy small (CIFAR: 45k images)
        b = x[start : start + chunk].to("cpu", torch.float64)
        total += b.sum(dim=(0, 2, 3))
        squares += (b * b).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    if x.dtype == torch.uint8:
        mean, std = mean / 255, std / 255
    return mean, torch.where(std > 0, std, torch.ones_like(std))  # a constant channel just gets centred


class TensorSource:
    """A `BatchSource` over resident tensors: x (N, C, H, W; uint8 or float) and y (N,) int64.

    shuffle: a fresh permutation per epoch from (seed, "order", epoch); otherwise file order.
    pad > 0: zero-pad/crop/flip augmentation from (seed, "augment", epoch), applied to the raw
    pixels before normalisation, as the torchvision pipeline does.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        seed: int = 0,
        shuffle: bool = False,
        pad: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size, self.seed, self.shuffle, self.pad = batch_size, seed, shuffle, pad
        self.num_samples = len(x)
        self.mean, self.std = mean, std  # per channel, of the [0, 1]-scaled training split
        # normalise as one multiply-add: (x / range - mean) / std = x * scale + shift
        value_range = 255.0 if x.dtype == torch.uint8 else 1.0
        shape = (1, -1, 1, 1)
        self._scale = (1.0 / (std * value_range)).to(x.device, torch.float32).view(shape)
        self._shift = (-mean / std).to(x.device, torch.float32).view(shape)
        self.set_shard(0, 1, lockstep=False)

    def set_shard(self, rank: int, world: int, lockstep: bool) -> None:
        self.bounds = shard_bounds(self.num_samples, self.batch_size, rank, world, lockstep)

    def __len__(self) -> int:
        return len(self.bounds)  # one process: the last partial batch is kept

    def normalize(self, xb: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._shift, xb.to(torch.float32), self._scale)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n, device = self.num_samples, self.x.device
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=generator(self.seed, "order", epoch)).to(device)
        if self.pad:
            offsets, flips = draw_pad_crop_flip(n, self.pad, generator(self.seed, "augment", epoch))
            offsets, flips = offsets.to(device), flips.to(device)
        for start, stop in self.bounds:
            if order is None:
                xb, yb = self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.pad:
                xb = pad_crop_flip(xb, offsets[start:stop], flips[start:stop], self.pad)
            yield self.normalize(xb), yb


def _fmt(values: torch.Tensor) -> str:
    parts = [f"{v:.3f}" for v in values.tolist()]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def build_tensor_data(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    num_classes: int,
    val_fraction: float,
    pad: int,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    device: torch.device,
    origin: str,
) -> Data:
    """Split the official training set 9/1, normalise with the training part's channel statistics,
    move everything to `device` and wrap it as `Data`. pad=0 means no augmentation."""
    for part, labels in (("training", train_y), ("test", test_y)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name}: {part} labels outside 0..{num_classes - 1} in {origin}")
    train_idx, val_idx = split_indices(len(train_x), val_fraction, seed)
    tr_x, tr_y = train_x[train_idx], train_y[train_idx]
    mean, std = channel_stats(tr_x)

    def on_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.contiguous().to(device), y.to(device, torch.int64)

    tr_x, tr_y_dev = on_device(tr_x, tr_y)
    va_x, va_y = on_device(train_x[val_idx], train_y[val_idx])
    te_x, te_y = on_device(test_x, test_y)
    train = TensorSource(tr_x, tr_y_dev, batch_size, mean, std, seed=seed, shuffle=True, pad=pad)
    val = TensorSource(va_x, va_y, eval_batch_size, mean, std)
    test = TensorSource(te_x, te_y, eval_batch_size, mean, std)
    tr_y_cpu = tr_y.to(torch.int64)

    def score_batches(
        n: int, score_batch_size: int, classes: Optional[Sequence[int]], gen: torch.Generator
    ) -> list[Batch]:
        batches = []
        for idx in draw_score_indices(tr_y_cpu, n, score_batch_size, classes, gen):
            idx = idx.to(device)
            batches.append((train.normalize(tr_x.index_select(0, idx)), tr_y_dev.index_select(0, idx)))
        return batches

    augment = f", augment pad {pad} + crop + flip" if pad else ""
    description = (
        f"{name}: {len(tr_x)} train / {len(va_x)} val / {len(te_x)} test from {origin}, "
        f"mean {_fmt(mean)} std {_fmt(std)}{augment}"
    )
    return Data(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]),
        score_batches=score_batches,
        description=description,
        normalization={
            "mean": mean.tolist(), "std": std.tolist(),
            "preprocess": "x / 255 for uint8 pixels (float inputs as given), then (x - mean) / std per channel",
        },
    )
