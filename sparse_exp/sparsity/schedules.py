"""The schedules of the methods that change the mask during or across trainings (IP appendix G).

    drop_fraction     DST (SET, RigL): the fraction of a layer's non-zero weights exchanged at
                      step t, a cosine decay from p_init to p_min over the T training steps (eq. A.77)
    gmp_compression   GMP: the compression rate reached at step t, cubic between t0 and t1
                      (eq. 5.16 / A.82)
    gmp_update_steps  GMP: whether step t prunes (every N steps from t0 on, and at t1 itself)
    lth_kept_counts   LTH: the kept weights after each pruning round, 20% of the remaining weights
                      per round and the last round clipped to exactly floor((1 - q) D) (eq. A.75)
"""
from __future__ import annotations

import math

from sparse_exp.sparsity.select import kept_count


def drop_fraction(step: int, total_steps: int, p_init: float = 0.5, p_min: float = 0.005) -> float:
    """p_t = p_min + (p_init - p_min) / 2 * (1 + cos(t pi / T))   (eq. A.77)."""
    t = min(max(step, 0), total_steps)
    return p_min + 0.5 * (p_init - p_min) * (1.0 + math.cos(math.pi * t / total_steps))


def gmp_compression(step: int, q: float, t0: int, t1: int) -> float:
    """q(t) = 0 before t0, q (1 - (1 - (t - t0) / (t1 - t0))^3) on [t0, t1], q after t1 (eq. A.82;
    the appendix's "1" after t1 is the final rate q, as eq. 5.16 writes it)."""
    if step < t0:
        return 0.0
    if step >= t1:
        return q
    return q * (1.0 - (1.0 - (step - t0) / (t1 - t0)) ** 3)


def gmp_is_update(step: int, t0: int, t1: int, every: int) -> bool:
    """GMP prunes at t0, t0 + N, t0 + 2N, ... up to t1, and at t1 itself so the final rate q is
    reached exactly even when t1 - t0 is not a multiple of N (eq. A.82 evaluates at k N)."""
    return t0 <= step <= t1 and ((step - t0) % every == 0 or step == t1)


def lth_kept_counts(total: int, q: float, prune_fraction: float = 0.2, bases: int = 0) -> list[int]:
    """Kept prunable weights after pruning round r = 1, 2, ...: floor((1 - f)^r D), the last one
    clipped to floor((1 - q) D). Its length is ceil(log(1 - q) / log(1 - f)) (for f = 0.2 the
    denominator is log 4 - log 5), so the run has 1 + that many trainings (eq. A.75).

    bases = B > 0 (method.count_bases): the rounds sit at q_r = 1 - (1 - f)^r with the bases counted,
    floor((1 - f)^r (D + B)) - B coefficients, so every round of an IP run is comparable with the
    SP round of the same r (Fig. 5.10); q is then the coefficient compression of the final round."""
    if not 0.0 < prune_fraction < 1.0:
        raise ValueError(f"prune_fraction must lie in (0, 1), got {prune_fraction}")
    target = kept_count(q, total)
    counts: list[int] = []
    kept, r = total, 0
    while kept > target:
        r += 1
        kept = max(target, int(math.floor((1.0 - prune_fraction) ** r * (total + bases) + 1e-9)) - bases)
        counts.append(kept)
    return counts


def lth_trainings(q: float, prune_fraction: float = 0.2) -> int:
    """Eq. A.75: k = 1 + ceil(log(1 - q) / (log 4 - log 5)) trainings (generalised to any f)."""
    if q <= 0.0:
        return 1
    return 1 + math.ceil(math.log(1.0 - q) / math.log(1.0 - prune_fraction) - 1e-12)
