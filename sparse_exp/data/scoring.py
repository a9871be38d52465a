"""Which training samples the scoring batches (SNIP, GraSP, ...) are made of.

Shared by the tensor and folder datasets: they differ only in how a chosen index becomes an image.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def draw_score_indices(
    labels: torch.Tensor,
    n_batches: int,
    batch_size: int,
    classes: Optional[Sequence[int]],
    gen: torch.Generator,
) -> list[torch.Tensor]:
    """n_batches index tensors of batch_size positions into `labels` (CPU, int64), drawn with `gen`.

    Samples are drawn without replacement across all batches while the (class-restricted) pool
    lasts; if more are needed, a fresh permutation of the pool is appended, so repeats only occur
    once every eligible sample has been used.
    """
    if n_batches < 1 or batch_size < 1:
        raise ValueError(f"score_batches needs n >= 1 and batch_size >= 1, got {n_batches} and {batch_size}")
    labels = labels.cpu()
    if classes is None:
        pool = torch.arange(len(labels))
    else:
        pool = torch.nonzero(torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))).flatten()
        if len(pool) == 0:
            raise ValueError(f"score_batches: no training samples with a label in {list(classes)}")
    need = n_batches * batch_size
    chunks, total = [], 0
    while total < need:
        # the permutation is drawn on the generator's own device so a CUDA generator works too
        perm = torch.randperm(len(pool), generator=gen, device=gen.device).cpu()
        chunks.append(pool[perm])
        total += len(pool)
    return list(torch.cat(chunks)[:need].view(n_batches, batch_size))
