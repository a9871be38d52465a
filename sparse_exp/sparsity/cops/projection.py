"""Projection of the LP solution on a binary mask (Theorem 4.3.1), and the mask at lam -> infinity.

At lam* the dual g has a kink between two pieces, those of m- (left, S1 > kappa) and m+ (right,
S1 < kappa). The relaxed optimum is p* = S0(gamma m_minus + (1 - gamma) m_plus) with S1 = kappa
(the LP optimum (4.13), to rounding; checked against scipy's HiGHS in tests/test_cops.py). The
result is projected on m_plus (feasible, S1 <= kappa, the default) or m_minus (slightly infeasible,
better target score), Theorem 4.3.1.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dual import CandidateSet
from .selection import selection_mask, smallest_any


def one_swap(cands: CandidateSet, selL, selR, sL, sR, kap):
    """Theorem 4.3.1 (proof B.1.5): if the masks of the two pieces at lam* differ in more than one
    entry (a block of ties at lam*: equal values s0 + lam* s1, or values crossing zero together),
    walk from m- to m+ one entry at a time and keep the pair around kappa, so m+ and m- differ in
    one entry each. Every mask on the way has the same Lagrangian value at lam*. Vectorised: the
    walk is a cumulative sum, so a block of millions of ties costs a sort, not a loop.

    Returns (m-, m+, S(m-), S(m+), swap) over the candidates, S = (S0, S1) and swap = (i_plus,
    i_minus) in full indices (None where m+ and m- are equal or the walk never reaches kappa)."""
    ops = cands.ops
    diff_m = ops.nonzero(selL & ~selR)  # in m-, not in m+
    diff_p = ops.nonzero(selR & ~selL)  # in m+, not in m-
    nm, np_ = len(diff_m), len(diff_p)

    def full_index(i):
        return None if i is None else (int(cands.idx[i]) if cands.idx is not None else int(i))

    if nm <= 1 and np_ <= 1:
        if not (nm or np_):
            return selL, selR, sL, sR, None
        return selL, selR, sL, sR, (full_index(int(diff_p[0]) if np_ else None), full_index(int(diff_m[0]) if nm else None))
    on_numpy = isinstance(diff_m, np.ndarray)
    to_np = (lambda x: x) if on_numpy else (lambda x: x.cpu().numpy())
    s0c, s1c = to_np(cands.s0), to_np(cands.s1)
    dm, dp = to_np(diff_m), to_np(diff_p)
    out_m = dm[np.argsort(-s1c[dm], kind="stable")]  # leave first: the largest control score
    in_p = dp[np.argsort(s1c[dp], kind="stable")]  # enter first: the smallest control score
    steps = max(nm, np_)
    d0, d1 = np.zeros(steps), np.zeros(steps)
    d0[:np_] += s0c[in_p]
    d1[:np_] += s1c[in_p]
    d0[:nm] -= s0c[out_m]
    d1[:nm] -= s1c[out_m]
    c0, c1 = sL[0] + np.cumsum(d0), sL[1] + np.cumsum(d1)
    hits = np.flatnonzero(c1 <= kap)
    if not hits.size:
        return selL, selR, sL, sR, None
    k = int(hits[0])  # after swap k (0-based) the control constraint holds for the first time

    def walked(j):  # the mask after the first j swaps
        m = ops.copy(selL)
        for idx, value in ((out_m[: min(j, nm)], False), (in_p[: min(j, np_)], True)):
            if len(idx):
                m[idx if on_numpy else torch.as_tensor(idx, device=m.device)] = value
        return m

    prev = (sL[0], sL[1]) if k == 0 else (float(c0[k - 1]), float(c1[k - 1]))
    swap = (full_index(int(in_p[k]) if k < np_ else None), full_index(int(out_m[k]) if k < nm else None))
    return walked(k), walked(k + 1), prev, (float(c0[k]), float(c1[k])), swap


def limit_mask(ops, x0, x1, d: int):
    """I_lam for lam -> infinity: the d first entries in lexicographic (s1, s0, index) order among
    those with s1 < 0, or s1 = 0 and s0 < 0."""
    if d <= 0:
        return x1 < -math.inf
    neg = x1 < 0
    n_neg = ops.count(neg)
    if n_neg >= d:
        t = ops.kth(x1, d)
        sel = x1 < t
        room = d - ops.count(sel)
        block = ops.nonzero(x1 == t)  # the tie block at the threshold: broken by the target score
    else:
        sel, room = neg, d - n_neg
        block = ops.nonzero(x1 == 0)  # entries that only the target score can make negative
    if room > 0 and len(block):
        sub = x0[block]
        pick = smallest_any(ops, sub, room) if n_neg >= d else selection_mask(ops, sub, room)
        sel[ops.compress(pick, block)] = True
    return sel
