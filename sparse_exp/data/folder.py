"""Datasets too large for memory (Tiny ImageNet, ImageNet): image files read by a DataLoader.

Determinism: the shuffle comes from a sampler seeded with (seed, "order", epoch) and recreated
every epoch. The random transforms of sample i in epoch e run under the CPU generator seeded with
(seed, "augment", e, i) (the global generator is saved and restored around it), so an epoch's
batches are the same for any `num_workers` and for a resumed run. Workers additionally get
`random`/numpy/torch seeds from (seed, "worker", e, worker id) for anything else they draw, and the
DataLoader's own base seed comes from a seeded generator, so it never consumes the global RNG.
"""
from __future__ import annotations

import functools
import random
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from sparse_exp.data.base import Batch, Data, shard_bounds
from sparse_exp.data.scoring import draw_score_indices
from sparse_exp.data.split import split_indices
from sparse_exp.errors import ConfigError
from sparse_exp.seeding import derive_seed, generator

Samples = list[tuple[str, int]]  # (image path, class index)


def load_rgb(path: str) -> Image.Image:
    """An image file as RGB, like torchvision's `pil_loader` (grayscale Tiny ImageNet images too)."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class ImageList(Dataset):
    """Images loaded with PIL as RGB and transformed; with a seed, sample i of `epoch` is augmented
    with its own seeded random numbers."""

    def __init__(self, samples: Samples, transform: Callable, seed: Optional[int] = None, epoch: int = 0):
        self.samples, self.transform, self.seed, self.epoch = samples, transform, seed, epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        image = load_rgb(path)
        if self.seed is None:
            return self.transform(image), label
        # torchvision's random transforms draw from the global CPU generator: seed it per sample
        # and restore it afterwards so no other consumer of the global stream is disturbed
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(derive_seed(self.seed, "augment", self.epoch, i))
            return self.transform(image), label


def _seed_worker(seed: int, epoch: int, worker_id: int) -> None:
    s = derive_seed(seed, "worker", epoch, worker_id)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


class FolderSource:
    """A `BatchSource` over image files: a fresh DataLoader per epoch, batches moved to `device`."""

    def __init__(
        self,
        samples: Samples,
        transform: Callable,
        batch_size: int,
        *,
        device: torch.device,
        num_workers: int,
        seed: int = 0,
        shuffle: bool = False,
        augment: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.samples, self.transform, self.batch_size = samples, transform, batch_size
        self.device, self.num_workers = torch.device(device), num_workers
        self.seed, self.shuffle, self.augment = seed, shuffle, augment
        self.num_samples = len(samples)
        self.set_shard(0, 1, lockstep=False)

    def set_shard(self, rank: int, world: int, lockstep: bool) -> None:
        self.bounds = shard_bounds(self.num_samples, self.batch_size, rank, world, lockstep)

    def __len__(self) -> int:
        return len(self.bounds)  # one process: drop_last=False

    def loader(self, epoch: int) -> DataLoader:
        dataset = ImageList(self.samples, self.transform, self.seed if self.augment else None, epoch)
        if self.shuffle:
            sampler = RandomSampler(dataset, generator=generator(self.seed, "order", epoch))
        else:
            sampler = SequentialSampler(dataset)
        order = list(sampler)
        return DataLoader(
            dataset,
            batch_sampler=[order[lo:hi] for lo, hi in self.bounds],  # this rank's part of every batch
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=functools.partial(_seed_worker, self.seed, epoch),
            generator=generator(self.seed, "loader", epoch),  # the workers' base seed, not the global RNG
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if not self.bounds:  # an empty part (no validation split with dataset.val_fraction=0)
            return
        for x, y in self.loader(epoch):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def build_folder_data(
    name: str,
    train_samples: Samples,
    test_samples: Samples,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    train_transform: Callable,
    eval_transform: Callable,
    cfg,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    device: torch.device,
    origin: str,
    notes: str,
) -> Data:
    """Split the training folder by dataset.val_fraction with the run seed (0: no validation part);
    the test set is the separate folder."""
    if cfg.num_workers < 0:
        raise ConfigError(f"dataset.num_workers must be >= 0, got {cfg.num_workers}")
    train_idx, val_idx = split_indices(len(train_samples), cfg.val_fraction, seed)
    tr = [train_samples[i] for i in train_idx.tolist()]
    va = [train_samples[i] for i in val_idx.tolist()]
    common = dict(device=device, num_workers=cfg.num_workers)
    augment = bool(cfg.augment)
    train_tf = train_transform if augment else eval_transform
    train = FolderSource(tr, train_tf, batch_size, seed=seed, shuffle=True, augment=augment, **common)
    val = FolderSource(va, eval_transform, eval_batch_size, **common)
    test = FolderSource(test_samples, eval_transform, eval_batch_size, **common)
    tr_labels = torch.tensor([label for _, label in tr], dtype=torch.int64)

    def score_batches(
        n: int, score_batch_size: int, classes: Optional[Sequence[int]], gen: torch.Generator
    ) -> list[Batch]:
        batches = []
        for idx in draw_score_indices(tr_labels, n, score_batch_size, classes, gen):
            picked = [tr[i] for i in idx.tolist()]
            x = torch.stack([eval_transform(load_rgb(path)) for path, _ in picked])
            y = torch.tensor([label for _, label in picked], dtype=torch.int64)
            batches.append((x.to(device), y.to(device)))
        return batches

    description = (
        f"{name}: {len(tr)} train / {len(va)} val / {len(test_samples)} test ({num_classes} classes) "
        f"from {origin}, {notes}{', augmented' if augment else ''}"
    )
    return Data(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=input_shape,
        score_batches=score_batches,
        description=description,
    )
