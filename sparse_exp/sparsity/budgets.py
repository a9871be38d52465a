"""Layerwise budgets: how many weights each layer keeps for a global density.

global   -- no per-layer budget; the global top-k decides (the papers' pruning at initialisation)
uniform  -- every layer keeps the same fraction
erk      -- Erdős-Rényi-kernel (eq. A.76): density_l = eps * (c_out + c_in + 2K) / (c_out c_in K^2),
            eps solved so the global count is exact; layers that would exceed density 1 are dense.
            Linear layers use (c_in + c_out) / (c_in c_out), RigL's Erdős-Rényi for dense layers.

All budgets return integer counts whose sum is exactly floor((1 - q) * D); rounding remainders go
to the layers with the largest fractional parts (ties to the earlier layer).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

from sparse_exp.registry import Registry

BUDGETS: Registry = Registry("budget")


def _distribute(raw: Mapping[str, float], sizes: Mapping[str, int], total: int) -> dict[str, int]:
    counts = {n: min(sizes[n], int(math.floor(raw[n]))) for n in raw}
    remainder = total - sum(counts.values())
    order = sorted(raw, key=lambda n: (-(raw[n] - math.floor(raw[n])), list(raw).index(n)))
    while remainder > 0:
        progressed = False
        for n in order:
            if remainder == 0:
                break
            if counts[n] < sizes[n]:
                counts[n] += 1
                remainder -= 1
                progressed = True
        if not progressed:
            raise ValueError(f"cannot place {total} weights in layers of sizes {dict(sizes)}")
    return counts


def uniform_counts(params: Mapping[str, torch.Tensor], total: int) -> dict[str, int]:
    sizes = {n: p.numel() for n, p in params.items()}
    D = sum(sizes.values())
    density = total / D if D else 1.0
    return _distribute({n: density * s for n, s in sizes.items()}, sizes, total)


def erk_ratio(shape: tuple[int, ...]) -> float:
    """(c_out + c_in + 2K) / (c_out c_in K^2) for a conv (or basis coefficients c_out x c_in x n#),
    (c_in + c_out) / (c_in c_out) for a linear layer."""
    if len(shape) == 4:
        c_out, c_in, kh, kw = shape
        return (c_out + c_in + kh + kw) / (c_out * c_in * kh * kw)
    if len(shape) == 3:  # interspace coefficients: n# plays the role of K^2
        c_out, c_in, n = shape
        k = math.sqrt(n)
        return (c_out + c_in + 2 * k) / (c_out * c_in * n)
    if len(shape) == 2:
        c_out, c_in = shape
        return (c_out + c_in) / (c_out * c_in)
    return 1.0


def erk_densities(params: Mapping[str, torch.Tensor], density: float, dense: Iterable[str] = ()) -> tuple[dict[str, float], float]:
    """Per-layer densities and the solved eps for a global `density` (RigL's procedure: layers that
    would exceed 1 are made dense and eps is re-solved for the rest)."""
    sizes = {n: p.numel() for n, p in params.items()}
    ratio = {n: erk_ratio(tuple(p.shape)) for n, p in params.items()}
    dense_set = set(dense)
    target = density * sum(sizes.values())
    while True:
        free = [n for n in sizes if n not in dense_set]
        budget = target - sum(sizes[n] for n in dense_set)
        denom = sum(ratio[n] * sizes[n] for n in free)
        eps = budget / denom if denom > 0 else 0.0
        over = [n for n in free if eps * ratio[n] > 1.0]
        if not over:
            break
        dense_set.update(over)
    return {n: (1.0 if n in dense_set else eps * ratio[n]) for n in sizes}, eps


def erk_counts(params: Mapping[str, torch.Tensor], total: int, dense: Iterable[str] = ()) -> dict[str, int]:
    sizes = {n: p.numel() for n, p in params.items()}
    D = sum(sizes.values())
    densities, _ = erk_densities(params, total / D if D else 1.0, dense)
    return _distribute({n: densities[n] * sizes[n] for n in sizes}, sizes, total)


BUDGETS.register("uniform")(uniform_counts)
BUDGETS.register("erk")(erk_counts)
