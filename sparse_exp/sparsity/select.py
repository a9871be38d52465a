"""Selecting exactly k entries: global top-k, per-layer top-k, and the budgets between them.

Thresholding with `>=`/`kthvalue` keeps the wrong count when scores tie, and `torch.quantile`
fails above 2^24 elements. Here the k-th largest value is found by partition-based
selection, everything above it is kept, and ties at the threshold are filled in index order, so
the count is exact and the mask is deterministic.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from sparse_exp.sparsity.mask import Mask


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (same shape as `scores`) with exactly k True entries at the largest scores;
    ties at the threshold go to lower flat indices; NaN counts as the smallest score."""
    flat = scores.reshape(-1)
    n = flat.numel()
    k = int(k)
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} entries")
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k == n:
        return torch.ones_like(scores, dtype=torch.bool)
    flat = torch.nan_to_num(flat.detach(), nan=-float("inf"))
    if flat.device.type == "cpu":  # pragma: no mutate (CUDA-only below: docs/testing.md)
        values = flat.numpy() if flat.dtype in (torch.float32, torch.float64) else flat.double().numpy()
        threshold = np.partition(values, n - k)[n - k]
        keep = values > threshold
        missing = k - int(np.count_nonzero(keep))
        if missing > 0:
            keep[np.flatnonzero(values == threshold)[:missing]] = True
        return torch.from_numpy(keep).view_as(scores)
    # pragma: no mutate start (CPU tests never get here: docs/testing.md)
    threshold = torch.kthvalue(flat.float() if flat.dtype == torch.float16 else flat, n - k + 1).values
    keep = flat > threshold
    missing = k - int(keep.sum())
    if missing > 0:
        ties = torch.nonzero(flat == threshold).reshape(-1)[:missing]
        keep[ties] = True
    return keep.view_as(scores)
    # pragma: no mutate end


def kept_count(q: float, n: int) -> int:
    """floor((1 - q) * D): the number of weights a compression rate q keeps (Algorithm 3.1, eq. A.39)."""
    return int(np.floor((1.0 - q) * n + 1e-9))


def flatten(scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([s.reshape(-1) for s in scores.values()])


def global_mask(scores: Mapping[str, torch.Tensor], k: int) -> Mask:
    """Keep the k best scores over all layers together (global pruning)."""
    flat = flatten(scores)
    keep = topk_mask(flat, k)
    return Mask.from_flat(keep.to(next(iter(scores.values())).device), scores)


def layerwise_mask(scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]) -> Mask:
    """Keep counts[name] best scores inside each layer (DST, uniform and ERK budgets)."""
    return Mask({name: topk_mask(s, counts[name]).to(s.device) for name, s in scores.items()})
