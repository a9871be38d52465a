"""COPS, Algorithm 4.1 of the thesis: combine a target and a control pruning score.

Problem (4.11), with scores in the *minimisation* convention of section 4.3.1 (s = -importance,
both normalised to ||s||_1 = 1, appendix A.4)::

    min_{m in {0,1}^D, |m|_0 <= d}  S0(m) = <s0, m>   such that   S1(m) = <s1, m> <= kappa

The solver works on the LP relaxation (4.13) (m in [0,1]^D, |m|_1 <= d) through its dual
(Lemma 4.3.1)::

    g(lam) = sum_{i in I_lam} (s0_i + lam * s1_i) - lam * kappa,    I_lam = d-idxmin{ s0_i + lam s1_i < 0 }

which is concave with superderivative g'(lam) = S1(m_lam) - kappa (Lemma 4.3.2). kappa_min is the
smallest reachable control score (4.27), kappa = alpha * kappa_min (4.28). If g'(0) <= 0 the
constraint is inactive and lam* = 0 (Algorithm 4.1, line 3); otherwise lam* is found by bisection
on [0, lam_plus] to eps_n (lines 7-19), where lam_plus is chosen automatically as the smallest power
of two with g'(lam_plus) <= 0. The result is projected on m_plus (feasible, S1 <= kappa, the
default) or m_minus (slightly infeasible, better target score), Theorem 4.3.1.

Speed: 15.3M weights in well under 3 s on one core (scripts/bench_cops.py); nothing is ever sorted
in full. The modules, in the order the solver uses them:

* `backends`   the vector primitives on numpy (CPU) and torch (CUDA); partition-based order statistics
* `selection`  d-idxmin (4.9/4.10) and verified bounds on order statistics; ties by the lower index
* `dual`       normalisation (A.4), kappa_min (4.27), g and g' (4.18/4.21) on a shrinking candidate set
* `bracket`    the first verified bracket of lam*, from an estimate on a subsample for large problems
* `bisection`  Algorithm 4.1 lines 6-19 (lam_plus, bisection) and the exact kink lam*
* `projection` m+/m- one swap apart (Theorem 4.3.1), and the mask at lam -> infinity
* `result`     `CopsResult`
* `solver`     `solve` and `cops_mask`: kappa, the degenerate cases, the steps above in order
* `linear`     the S0 + lam S1 baseline of section 4.4.4
"""
from .dual import kappa_min_of, normalise
from .linear import linear_combination
from .result import CopsResult
from .selection import select_smallest
from .solver import EPS_N, cops_mask, solve

__all__ = [
    "EPS_N", "CopsResult", "cops_mask", "kappa_min_of", "linear_combination", "normalise", "select_smallest", "solve",
]
