"""The first bracket [a, b] of lam*: g'(a) > 0 >= g'(b), with the candidate set shrunk to it.

g' is non-increasing (g is concave, Lemma 4.3.2), so one evaluation at each end proves that lam*
lies in between. Small problems find the bracket by doubling/halving from lam = 1. Large ones
start from a cheap estimate of lam* on a fixed random subsample of the scores, which gives a narrow
first bracket: every Algorithm-4.1 midpoint outside it then has a sign known from the monotonicity
of g' and is not evaluated, and the candidate set restricted to it is small.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .backends import SAMPLE, SMALL
from .dual import CandidateSet, kappa_min
from .selection import select_sums

LAM_MIN_EXP, LAM_MAX_EXP = -60, 80  # search range of lam*, and of the upper bound lam_plus = 2^j
TOO_LARGE = f"lam* exceeds 2^{LAM_MAX_EXP}; the mask is the limit of lam -> infinity"


def find_bracket(cands: CandidateSet, kap: float, alpha, known, messages) -> tuple[float, Optional[float]]:
    """Find a < b with g'(a) > 0 >= g'(b) (values stored in `known`) and restrict the candidates to
    [a, b]. Returns a = 0 with g'(0) <= 0 when lam* = 0, and b = None when lam* > 2^80.

    Large problems start from an estimate of lam* on a fixed random subsample and widen the
    bracket until it is verified (each attempt restricts the full vectors once); small ones (and
    large ones without an estimate) double/halve from lam = 1 with full evaluations."""

    def g1(lam: float) -> float:
        if lam not in known:
            known[lam] = cands.evaluate(lam)
        return known[lam][1] - kap

    n = cands.n_full
    guess = estimate(cands.ops, cands.s0, cands.s1, cands.d, kap, alpha) if n > 4 * SMALL else None
    if guess is None:
        if g1(0.0) <= 0:
            return 0.0, 0.0
        lam = 1.0
        if g1(lam) > 0:  # double up
            while g1(lam) > 0:
                if lam >= 2.0 ** LAM_MAX_EXP:
                    messages.append(TOO_LARGE)
                    return lam, None
                lam *= 2.0
            a, b = lam / 2.0, lam
        else:  # halve down
            b = lam
            while b > 2.0 ** LAM_MIN_EXP and g1(b / 2.0) <= 0:
                b /= 2.0
            a = b / 2.0 if b > 2.0 ** LAM_MIN_EXP else 0.0
        if n > 4096:
            cands.reduce(a, b)
        return a, b
    # the subsample estimate is within ~20% for alpha >= 0.5 but tends to be high for small alpha
    # (up to 1.8x at alpha = 0.05 and q = 0.99): a wider lower side there
    ratio = 1.3
    low = 2.0 if alpha is None or alpha <= 0.1 else (1.5 if alpha <= 0.5 else ratio)
    a, b = guess / low, guess * ratio
    lo_known, hi_known = 0.0, math.inf  # g'(lo_known) > 0 (or lo_known = 0, unknown), g'(hi_known) <= 0
    for _ in range(200):
        cands.reset()
        cands.reduce(a, b)
        ga, gb = g1(a), g1(b)
        if ga > 0 >= gb or (a == 0.0 and ga <= 0):
            return a, b
        ratio = ratio * ratio
        if ga <= 0:  # lam* <= a
            hi_known = a
            a, b = (lo_known if a / ratio <= lo_known else a / ratio), a
        else:  # lam* > b
            lo_known = b
            if b >= 2.0 ** LAM_MAX_EXP:
                messages.append(TOO_LARGE)
                return b, None
            a, b = b, min(hi_known, b * ratio)
    raise RuntimeError("COPS: could not bracket lam* (internal error)")


def estimate(ops, x0, x1, d: int, kap: float, alpha) -> Optional[float]:  # pragma: no mutate block (docs/testing.md)
    """lam* of the same problem on a fixed random subsample: only a guess for the first bracket."""
    n = len(x0)
    m = 2 * SAMPLE
    if isinstance(x0, np.ndarray):
        idx = np.sort(np.random.default_rng(777).integers(0, n, m))
    else:
        g = torch.Generator(device="cpu").manual_seed(777)
        idx = torch.sort(torch.randint(0, n, (m,), generator=g)).values.to(x0.device)
    y0, y1 = x0[idx], x1[idx]
    f = len(y0) / n
    dm = max(1, int(round(d * f)))
    k_sub = alpha * kappa_min(ops, y1, dm) if alpha is not None else kap * f

    def slope(lam: float) -> float:
        return select_sums(ops, ops.axpy(y0, y1, lam), dm, y1, y1)[0] - k_sub

    if slope(0.0) <= 0:
        return None
    lo, hi = 0.0, 1.0
    while slope(hi) > 0:
        lo, hi = hi, 2.0 * hi
        if hi > 2.0 ** LAM_MAX_EXP:
            return None
    if lo == 0.0:
        while hi > 2.0 ** LAM_MIN_EXP and slope(hi / 2.0) <= 0:
            hi /= 2.0
        lo = hi / 2.0
    for _ in range(10):
        mid = math.sqrt(lo * hi)
        if slope(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)
