"""Algorithm 4.1, lines 6-19: the bisection for lam* inside a verified bracket, and the exact kink.

lam* is found by bisection on [0, lam_plus] to eps_n (lines 7-19), where lam_plus is chosen
automatically as the smallest power of two with g'(lam_plus) <= 0. Signs of g' outside the
bracket (pos, neg) of evaluated points follow from its monotonicity (Corollary 4.3.1) and cost
nothing; the candidate set is shrunk whenever the bracket has narrowed enough.

Exactness. After the eps-bisection, the final bracket is resolved to the kink lam* of g by a few
cutting-plane steps (intersection of the two supporting lines of g at the bracket ends), so m_plus
and m_minus are exactly the masks of Theorem 4.3.1: both minimise s0 + lam* s1 and they differ by
one swap (see projection.py).
"""
from __future__ import annotations

import math
from typing import Optional

from .backends import EPS64, SMALL
from .bracket import LAM_MAX_EXP, LAM_MIN_EXP
from .dual import CandidateSet, lagrangian


class LambdaSearch:
    """The state of the search for lam*: every evaluated (S0, S1) in `known`, the evaluated points
    pos < neg closest to lam* with g'(pos) > 0 > g'(neg), and `exact` once some g'(lam) = 0."""

    def __init__(self, cands: CandidateSet, known: dict, kap: float, a: float, b: float):
        self.cands, self.known, self.kap = cands, known, kap
        self.exact: Optional[float] = next((lam for lam in (a, b) if self.slope(lam) == 0.0), None)
        self.pos, self.neg = a, b  # g'(pos) > 0 > g'(neg), both evaluated; every lam in between is a candidate
        self.lam_plus = b  # an upper bound with g'(b) <= 0 until find_lam_plus
        self.lam_b, self.steps = 0.0, 0  # the last midpoint and the number of bisection steps

    def slope(self, lam: float) -> float:
        """g'(lam) = S1(m_lam) - kappa (4.21) at an evaluated lam."""
        return self.known[lam][1] - self.kap

    def sign_at(self, lam: float) -> float:
        """sign of g'(lam): deduced from monotonicity outside (pos, neg), else evaluated."""
        if lam <= self.pos:
            return 1.0  # pragma: no mutate (callers read only the sign: docs/testing.md)
        if lam >= self.neg:
            return -1.0
        self.known[lam] = self.cands.evaluate(lam)
        s = self.slope(lam)
        if s > 0:
            self.pos = lam
        elif s < 0:
            self.neg = lam
        return s

    def narrow(self) -> None:
        """Narrow [pos, neg] before the bisection needs it: two regula-falsi probes on the monotone
        g' and one more reduction. They only add known signs (the bisection's steps and result are
        those of Algorithm 4.1 from [0, lam_plus]); they save evaluations on a large candidate set."""
        for _ in range(2):
            pos, neg = self.pos, self.neg
            if self.exact is not None or self.cands.size <= SMALL or neg - pos <= 0.02 * neg:
                break  # pragma: no mutate (= return: nothing follows the loop)
            gp, gn = self.slope(pos), self.slope(neg)
            width = neg - pos
            x = min(max(pos + width * gp / (gp - gn), pos + 0.01 * width), neg - 0.01 * width)
            s = self.sign_at(x)
            if s == 0.0:
                self.exact = x
                break  # pragma: no mutate (= return: nothing follows the loop)
            y = x * (0.97 if s < 0 else 1.03)  # just across lam*, if the interpolation was good
            if self.pos < y < self.neg and self.sign_at(y) == 0.0:
                self.exact = y
                break  # pragma: no mutate (= return: nothing follows the loop)
            self.cands.reduce(self.pos, self.neg)

    def find_lam_plus(self, b: float) -> None:
        """The automatic upper bound: the smallest power of two with g'(lam_plus) <= 0 (b has one)."""
        j = min(LAM_MAX_EXP, max(LAM_MIN_EXP, math.ceil(math.log2(b))))
        while self.exact is None and j > LAM_MIN_EXP:
            s = self.sign_at(2.0 ** (j - 1))
            if s > 0:
                break
            j -= 1
            if s == 0.0:
                self.exact = 2.0 ** j
        self.lam_plus = 2.0 ** j

    def bisect(self, eps: float) -> None:
        """Lines 7-19: bisection on [0, lam_plus] until lam_plus^(k) - lam_0^(k) <= eps."""
        lo_l, hi_l = 0.0, self.lam_plus
        while self.exact is None and (self.steps == 0 or 0.5 * (hi_l - lo_l) > eps):  # repeat ... until
            mid = 0.5 * (lo_l + hi_l)
            if not lo_l < mid < hi_l:
                break  # pragma: no mutate (= return: nothing follows the loop); the float resolution of lam reached
            self.lam_b = mid
            s = self.sign_at(mid)
            self.steps += 1
            if s == 0.0:
                self.exact = mid
            elif s > 0:
                lo_l = mid
            else:
                hi_l = mid
            ra, rb = self.cands.interval
            if self.cands.size > 4096 and (self.neg - self.pos) <= 0.25 * (rb - ra):
                self.cands.reduce(self.pos, self.neg)

    def kink(self, refine: bool):
        """Resolve the final bracket [L, R], g'(L) > 0 > g'(R), to the kink lam* of g by cutting
        planes. Returns ((L, S(m_L)), (R, S(m_R)), lam*) with S = (S0, S1): the two pieces of g that
        meet at lam* are those of m_L = m- and m_R = m+. If some g'(x) = 0 turns up, `exact` is set
        instead. refine=False: the ends of the eps-bracket and the last midpoint."""
        L, R = self.pos, self.neg
        sL, sR = self.known[L], self.known[R]
        kap = self.kap
        lam_star = self.lam_b
        for _ in range(500 if refine else 0):
            den = sL[1] - sR[1]
            x = (sR[0] - sL[0]) / den  # where the supporting lines of g at L and R meet
            if not L < x < R:
                lam_star = min(max(x, L), R)
                break
            lam_star = x
            st = self.cands.evaluate(x)
            gx = lagrangian(st, x, kap)
            upper = lagrangian(sL, x, kap)
            tol = 64 * EPS64 * (abs(sL[0]) + abs(sR[0]) + x * (abs(sL[1]) + abs(sR[1]) + abs(kap)))
            if gx >= upper - tol:
                break  # g touches both lines at x: x is the kink lam*
            sx = st[1] - kap
            if sx == 0.0:
                self.known[x] = st
                self.exact = x
                break
            if sx > 0:
                L, sL = x, st
            else:
                R, sR = x, st
        return (L, sL), (R, sR), lam_star
