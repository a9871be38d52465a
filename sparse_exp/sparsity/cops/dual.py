"""The scores and the dual function of the COPS relaxation.

Scores are in the *minimisation* convention of section 4.3.1: s = -importance, normalised to
||s||_1 = 1 (appendix A.4). The LP relaxation (4.13) is solved through its dual (Lemma 4.3.1)::

    g(lam) = sum_{i in I_lam} (s0_i + lam * s1_i) - lam * kappa = S0(m_lam) + lam * (S1(m_lam) - kappa)   (4.18)
    I_lam  = d-idxmin{ s0_i + lam s1_i < 0 }

which is concave with superderivative g'(lam) = S1(m_lam) - kappa (Lemma 4.3.2, (4.21)). Every
evaluation therefore comes down to one selection and the two score sums (S0, S1) over it.

The candidate set makes those evaluations cheap during the search for lam*. For lam in [a, b] every
value v_i(lam) = s0_i + lam s1_i lies between its values at the ends, so the capped d-th order
statistic T(lam) = min(d-th smallest of v(lam), 0) lies between the d-th order statistics TL, TH of
those elementwise bounds. Indices whose upper bound is below TL are in I_lam for every lam in
[a, b], indices whose lower bound is above TH never are; only the rest (the candidates) are looked
at again.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .backends import EPS64, ops_for
from .selection import lower_kth, select_sums, selection_mask, upper_kth


def normalise(importance: torch.Tensor, name: str = "score") -> tuple[torch.Tensor, Optional[str]]:
    """Importance (higher = keep) -> minimisation-convention score s = -importance / ||importance||_1
    in float64 (appendix A.4). An all-zero vector carries no information and gives s = 0."""
    x = importance.detach().reshape(-1)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xn = x.numpy()
        norm = float(np.sum(np.abs(xn), dtype=np.float64))  # NaN/inf anywhere make the norm non-finite
        if not math.isfinite(norm):
            raise ValueError(f"COPS: the {name} importance contains NaN or inf values")
        out = np.empty(xn.shape, dtype=np.float64)
        if norm > 0.0:
            np.multiply(xn, -1.0 / norm, out=out, dtype=np.float64)
        s = torch.from_numpy(out)
    else:
        x = x.to(torch.float64)
        norm = float(x.abs().sum())
        if not math.isfinite(norm):
            raise ValueError(f"COPS: the {name} importance contains NaN or inf values")
        s = x * (-1.0 / norm) if norm > 0.0 else torch.zeros_like(x)
    if norm == 0.0:
        return s.zero_(), (
            f"the {name} importance is zero everywhere and cannot be normalised to ||s||_1 = 1; "
            f"it is treated as carrying no information (s = 0)"
        )
    return s, None


def kappa_min(ops, s1, d: int) -> float:
    """kappa_min = S1(m_dagger) = min over |m|_0 <= d of S1(m), eq. (4.27): the d smallest
    negative control scores."""
    return select_sums(ops, s1, d, s1, s1)[0]


def kappa_min_of(s1: torch.Tensor, d: int, backend: Optional[str] = None) -> float:
    """kappa_min = S1(m_dagger) = min over |m|_0 <= d of S1(m), eq. (4.27)."""
    ops = ops_for(s1.device, backend)
    return kappa_min(ops, ops.asarray(s1.reshape(-1)), d)


def lagrangian(scores: tuple[float, float], lam: float, kappa: float) -> float:
    """S0(m) + lam (S1(m) - kappa) for a mask m with scores (S0(m), S1(m)): the supporting line of g
    belonging to m; g(lam) is its value at m = m_lam, eq. (4.18)."""
    return scores[0] + lam * (scores[1] - kappa)


class CandidateSet:
    """I_lam for lam in a bracket [a, b]: the indices known to be in for every lam in the bracket
    (their count and score sums) plus the candidates (indices, scores) that may be in or out."""

    def __init__(self, ops, s0, s1, d: int, scales: tuple[float, float]):
        self.ops, self.d = ops, d
        self.n_full = len(s0)
        self._full = (s0, s1)
        self.scale0, self.scale1 = scales  # max |s0|, max |s1|: bound the rounding of s0 + lam s1
        self.evaluations = 0
        self.reset()

    def reset(self) -> None:
        """Back to the full problem (every index a candidate)."""
        self.s0, self.s1 = self._full  # candidate scores
        self.idx = None  # candidate indices into the full vector; None = all
        self.in_count, self.in_s0, self.in_s1 = 0, 0.0, 0.0  # the sure-in set A
        self.in_mask = None  # full boolean mask of A (created at the first reduction)
        self.interval = (0.0, math.inf)

    @property
    def size(self) -> int:
        return len(self.s0)

    @property
    def need(self) -> int:
        return self.d - self.in_count

    def _v(self, lam: float):
        return self.ops.axpy(self.s0, self.s1, lam)

    def evaluate(self, lam: float) -> tuple[float, float]:
        """(S0(m_lam), S1(m_lam)); the superderivative is g'(lam) = S1 - kappa (4.21)."""
        a, b = self.interval
        if not a <= lam <= b:
            raise AssertionError(f"COPS internal error: lam={lam} outside the candidate bracket [{a}, {b}]")
        self.evaluations += 1
        v = self.s0 if lam == 0.0 else self._v(lam)
        c0, c1 = select_sums(self.ops, v, self.need, self.s0, self.s1)
        return self.in_s0 + c0, self.in_s1 + c1

    def selection(self, lam: float):
        """Boolean selection over the candidates at lam."""
        return selection_mask(self.ops, self.s0 if lam == 0.0 else self._v(lam), self.need)

    def full_mask(self, sel) -> torch.Tensor:
        """The full mask (a torch tensor): the sure-in set plus the selected candidates."""
        ops = self.ops
        if self.idx is None:  # never reduced, so no sure-in set either (reduce sets both)
            mask = sel
        else:
            mask = ops.copy(self.in_mask) if self.in_mask is not None else ops.zeros_bool(self.n_full, sel)
            mask[ops.compress(sel, self.idx)] = True
        return ops.to_torch(mask)

    def reduce(self, a: float, b: float) -> None:
        """Restrict to the bracket [a, b]: drop indices that are in I_lam (or out of it) for every
        lam in [a, b]."""
        ops = self.ops
        need = self.need
        lo, hi = ops.min_max(self._v(a), self._v(b))
        # float rounding of s0 + lam s1 at any lam in [a, b] stays within delta of the exact line
        delta = 8 * EPS64 * (self.scale0 + max(abs(a), abs(b)) * self.scale1) + 1e-300
        tl = lower_kth(ops, lo, need) - 2 * delta  # <= min(kth(lo), 0) - 2 delta
        th = upper_kth(ops, hi, need) + 2 * delta  # >= min(kth(hi), 0) + 2 delta
        sure_in = hi < tl
        keep = ~sure_in & (lo <= th)
        n_in = ops.count(sure_in)
        if n_in:
            self.in_count += n_in
            self.in_s0 += ops.masked_sum(self.s0, sure_in)
            self.in_s1 += ops.masked_sum(self.s1, sure_in)
            if self.idx is None:  # the first reduction: no sure-in set yet
                self.in_mask = sure_in
            else:
                if self.in_mask is None:
                    self.in_mask = ops.zeros_bool(self.n_full, self.s0)
                self.in_mask[ops.compress(sure_in, self.idx)] = True
        if self.idx is None:
            self.idx = ops.nonzero(keep)
            self.s0, self.s1 = self.s0[self.idx], self.s1[self.idx]
        else:
            self.idx = ops.compress(keep, self.idx)
            self.s0, self.s1 = ops.compress(keep, self.s0), ops.compress(keep, self.s1)
        self.interval = (a, b)
