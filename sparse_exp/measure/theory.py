"""Closed-form curves of chapter 5 that need no training: the theoretical speed-ups of Fig. 5.4
(eq. 5.15) and the bound of Theorem 5.3.1 (eq. 5.4, IP appendix eq. A.85) behind Figs. 5.3 / A9.

Theorem 5.3.1, part 2: a layer's D2 = c_in c_out filters of D1 = K^2 (n#) entries, d of them kept.
If IP keeps the support of SP's magnitude mask and may train the basis, IP's approximation error is
strictly smaller with probability >= 1 - eps, where eps = C(D2, d / D1) / C(D1 D2, d) when D1
divides d (the kept entries could be whole filters) and 0 otherwise. The binomials are huge, so
everything is computed as log10 through lgamma.
"""
from __future__ import annotations

import math

from sparse_exp.measure.flops import ip_over_sp


def speedups(kernel: int, c_out: int, q: float, dict_size: int | None = None) -> tuple[float, float]:
    """(SP, IP) theoretical speed-ups of one sparse convolution over the dense one (Fig. 5.4):
    SP 1 / (1 - q); IP divides that by eq. 5.15, i.e. c_out / (c_out (1 - q) + K^2) for a basis.
    The feature-map size cancels (overhead and products both scale with d1 d2)."""
    sp = 1.0 / (1.0 - q)
    return sp, sp / ip_over_sp(kernel, c_out, q, dict_size)


def log10_binom(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)


def log10_epsilon(d1: int, d2: int, kept: int) -> float:
    """log10 of eq. 5.4's eps for a layer of d2 filters with d1 entries each and `kept` kept entries;
    -inf where eps = 0 (d1 does not divide kept). Needs d1 > 1 and 0 < kept < d1 d2 (the theorem)."""
    if d1 <= 1 or not 0 < kept < d1 * d2:
        raise ValueError(f"Theorem 5.3.1 needs D1 > 1 and 0 < d < D1 D2; got D1={d1}, D2={d2}, d={kept}")
    if kept % d1:
        return -math.inf
    return log10_binom(d2, kept // d1) - log10_binom(d1 * d2, kept)


def mask_bounds(masks: dict) -> list[dict]:
    """Theorem 5.3.1 for every KxK convolution (K > 1) of a mask: conv weights (c_out, c_in, K, K)
    with D1 = K^2, interspace coefficients (c_out, c_in, n#) with D1 = n#; D2 = c_out c_in.
    Fully kept or fully pruned layers are outside the theorem (eps reported as null)."""
    rows = []
    for name, m in masks.items():
        shape = tuple(m.shape)
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            d1 = shape[2] * shape[3]
        elif len(shape) == 3 and shape[2] > 1:
            d1 = shape[2]
        else:
            continue
        d2, kept = shape[0] * shape[1], int(m.sum())
        inside = 0 < kept < d1 * d2
        rows.append({"name": name, "D1": d1, "D2": d2, "kept": kept, "density": kept / (d1 * d2),
                     "log10_eps": log10_epsilon(d1, d2, kept) if inside else None})
    return rows
