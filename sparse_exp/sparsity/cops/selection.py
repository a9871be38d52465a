"""d-idxmin (4.9/4.10): the d smallest *negative* entries of a vector, and bounds on order statistics.

A selection is returned as (strict, extra): the boolean mask of the entries strictly below the
threshold T (the d-th smallest value) plus `extra`, the indices of the tie block v == T needed to
reach d. Sums over a selection then need no merged mask, which matters on 15M-entry vectors.

Ties are broken by the lower index everywhere (as `sparsity.select.topk_mask`), so the result is a
deterministic function of the inputs, the same on both backends (up to the rounding of sums).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .backends import ops_for


def _split_at_kth(ops, v, k: int):
    """The k smallest entries of v (no sign condition) as (strict, extra), ties by the lower index."""
    t = ops.kth(v, k)
    strict = v < t
    fill = k - ops.count(strict)
    return strict, (ops.nonzero(v == t)[:fill] if fill else None)


def _merged(strict, extra):
    if extra is not None:
        strict[extra] = True
    return strict


def select(ops, v, k: int):
    """d-idxmin{v_i < 0} for d = k as (strict, extra): the indices with v < T (a boolean mask) plus
    `extra`, the lowest indices of the tie block v == T needed to reach k (None if none).
    strict is None when nothing is selected."""
    if k <= 0:
        return None, None
    neg = v < 0
    if ops.count(neg) <= k:
        return neg, None
    return _split_at_kth(ops, v, k)


def selection_mask(ops, v, k: int):
    """d-idxmin{v_i < 0} for d = k as one boolean mask."""
    strict, extra = select(ops, v, k)
    if strict is None:
        return v < -math.inf
    return _merged(strict, extra)


def smallest_any(ops, v, k: int):
    """The k smallest entries of v (no sign condition), ties by the lower index."""
    if k >= len(v):
        return v == v
    return _merged(*_split_at_kth(ops, v, k))


def select_sums(ops, v, k: int, w0, w1) -> tuple[float, float]:
    """(sum of w0, sum of w1) over d-idxmin{v < 0} with d = k."""
    strict, extra = select(ops, v, k)
    if strict is None:
        return 0.0, 0.0
    a0 = ops.masked_sum(w0, strict)
    a1 = a0 if w1 is w0 else ops.masked_sum(w1, strict)
    if extra is not None:
        a0 += ops.sum(w0[extra])
        a1 += ops.sum(w1[extra])
    return a0, a1


# bounds on the capped order statistic min(k-th smallest of x, 0), for the candidate set ---------
def lower_kth(ops, x, k: int) -> float:
    """A value <= min(k-th smallest of x, 0) (verified; cheap on big CPU vectors)."""
    if k <= 0:
        return -math.inf
    if k > len(x):
        return 0.0
    lo, _ = ops.sample_bounds(x, k)
    for _ in range(3):
        lo = min(lo, 0.0)
        if lo == -math.inf or ops.count(x < lo) < k:  # fewer than k strictly below: kth >= lo
            return lo
        lo = lo - abs(lo) - 1e-300  # the sample was unlucky: go lower
    return min(ops.kth(x, k), 0.0)


def upper_kth(ops, x, k: int) -> float:
    """A value >= min(k-th smallest of x, 0) (verified)."""
    if k <= 0:
        return -math.inf
    if k > len(x):
        return 0.0
    _, hi = ops.sample_bounds(x, k)
    if hi >= 0:
        return 0.0
    if ops.count(x <= hi) >= k:  # at least k at or below: kth <= hi
        return hi
    return min(ops.kth(x, k), 0.0)


# public -----------------------------------------------------------------------------------------
def select_smallest(v: torch.Tensor, d: int, backend: Optional[str] = None) -> torch.Tensor:
    """The mask of d-idxmin{v_i : v_i < 0} (4.9/4.10): the d smallest *negative* entries of v,
    ties broken by the lower index. Fewer than d entries if fewer than d are negative."""
    ops = ops_for(v.device, backend)
    return ops.to_torch(selection_mask(ops, ops.asarray(v.reshape(-1)), d))
