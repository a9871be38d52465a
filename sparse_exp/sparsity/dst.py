"""Mask operations of dynamic sparse training (IP appendix G.3): the random Erdős-Rényi-kernel
start mask and the per-layer drop-and-grow update shared by SET and RigL.

* `erk_random_mask`: layer l keeps exactly n_l weights chosen uniformly at random, where the
  counts n_l follow eq. A.76 (densities eps * (c_out + c_in + 2K) / (c_out c_in K^2), eps solved so
  the global count is floor((1 - q) D); sparsity/budgets.py).
* `drop_and_grow`: in every layer, drop the floor(p_t * n_l) active weights of smallest magnitude
  and grow as many at the best grow scores among all inactive positions (random scores for SET,
  |dense gradient| for RigL). Positions dropped in this update compete again, as in the official
  RigL and sparse_learning code, so a dropped-and-regrown weight simply stays. Per-layer counts
  are conserved exactly (sparsity/select.topk_mask: exact k, deterministic ties).

Nothing here assumes 4-D convolution weights: the tensors may be linear weights or the filter-
basis coefficients (c_out x c_in x n#) of the interspace. The update touches each tensor a few
times (a VGG-16 update takes a fraction of a second on one CPU thread, scripts/bench_dst.py).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from sparse_exp.seeding import derive_seed
from sparse_exp.sparsity.budgets import erk_counts, erk_densities
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.select import kept_count, topk_mask

GrowScore = Callable[[str, torch.Tensor], torch.Tensor]


def uniform_scores(shape, device, seed: int, *stream) -> torch.Tensor:
    """U[0, 1) float32 scores from the stream (seed, *stream): numpy's PCG64 on the CPU (twice as
    fast as torch's CPU generator), torch's generator of the device elsewhere."""
    device = torch.device(device)
    if device.type == "cpu":
        rng = np.random.default_rng(derive_seed(seed, *stream))
        return torch.from_numpy(rng.random(tuple(shape), dtype=np.float32))
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *stream))
    return torch.rand(tuple(shape), generator=gen, device=device)


def erk_random_mask(params: Mapping[str, torch.Tensor], q: float, seed: int, *stream) -> tuple[Mask, dict]:
    """Random mask with ERK layer counts (eq. A.76), the layer of parameter `name` drawn from
    (seed, *stream, layer name). The stream is the layer's, not the parameter's (`conv.weight` in SP,
    `conv.coeff` in IP), and the uniform numbers fill the tensor in memory order, so an SP and an IP
    run of one seed (n# = K^2) start from the same mask positions: IP coefficient n of a filter
    sits where spatial entry n does under the standard basis. Returns the mask and {"eps": eps}."""
    total = sum(p.numel() for p in params.values())
    counts = erk_counts(params, kept_count(q, total))
    _, eps = erk_densities(params, 1.0 - q)
    masks = {name: topk_mask(uniform_scores(p.shape, p.device, seed, *stream, name.rpartition(".")[0]), counts[name])
             for name, p in params.items()}
    return Mask(masks), {"eps": eps}


@torch.no_grad()
def drop_and_grow(params: Mapping[str, torch.Tensor], mask: Mask, fraction: float, grow_score: GrowScore) -> tuple[Mask, int]:
    """The DST mask update (appendix G.3). `grow_score(name, p)` gives scores >= 0 of p's shape on
    p's device (random numbers or |gradient|) that this function may overwrite. Returns the new
    mask and the number of weights that became active (net exchange over all layers)."""
    new, grown_total = {}, 0
    for name, p in params.items():
        m = mask.masks[name].reshape(-1)
        active = torch.nonzero(m).reshape(-1)
        n = int(fraction * active.numel())  # floor, as RigL's int cast
        if n == 0:
            new[name] = mask.masks[name]
            continue
        # drop: the n smallest magnitudes among the active weights
        survive = topk_mask(p.detach().reshape(-1)[active].abs(), active.numel() - n)
        kept = active[survive]
        # grow: the n best scores among everything not kept (scores >= 0 > -1), the dropped included
        score = grow_score(name, p).reshape(-1).float().nan_to_num_(0.0)
        score[kept] = -1.0
        keep = topk_mask(score, n)
        grown_total += int(torch.count_nonzero(keep & ~m))
        keep[kept] = True
        new[name] = keep.view_as(p)
    return Mask(new), grown_total
