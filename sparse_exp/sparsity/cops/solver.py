"""Algorithm 4.1 end to end: kappa, the degenerate cases, the search for lam*, the projection.

Degenerate inputs (defined answers, reported in `CopsResult.messages`):

* d = 0 (q = 1): the empty mask. d >= D (q = 0): every entry with a negative score may be kept.
* an importance vector that is all zero cannot be normalised: it is treated as carrying no
  information (s = 0). A zero control score gives kappa_min = 0 and hence the target-only mask; with
  a zero target score every entry ties at lam* = 0 and m+ is the shortest prefix of the control
  order with S1 <= kappa (an LP optimum; every feasible mask has S0 = 0).
* kappa_min = 0 (no entry has a positive control importance): kappa = alpha * kappa_min = 0 is the
  alpha = 0 case, i.e. no constraint; the target-only mask is returned.
* alpha = 0 is the unconstrained problem (section 4.3.4: "for alpha = 0 the constraint is inactive"),
  so it returns the target-only mask m(0) exactly, even if S1(m(0)) > 0.
* fewer than d negative values: problems (4.7)/(4.11) never keep an entry whose score is >= 0, so
  the mask keeps fewer than d entries (said in the messages).
* an explicit kappa below kappa_min is infeasible (ValueError); kappa == kappa_min violates Slater's
  condition and gives the limit mask lam -> infinity (control-only, ties broken by the target).
* NaN/inf scores raise ValueError.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .backends import ops_for
from .bisection import LambdaSearch
from .bracket import find_bracket
from .dual import CandidateSet, kappa_min, lagrangian, normalise
from .projection import limit_mask, one_swap
from .result import CopsResult, make_result

EPS_N = 1e-6  # appendix A.4


def solve(s0: torch.Tensor, s1: torch.Tensor, d: int, *, alpha: Optional[float] = None,
          kappa: Optional[float] = None, eps: float = EPS_N, projection: str = "plus",
          refine: bool = True, backend: Optional[str] = None, with_masks: bool = False) -> CopsResult:
    """Algorithm 4.1 on scores already in the minimisation convention (lower = keep).

    Give either `alpha` (kappa = alpha * kappa_min, eq. 4.28) or `kappa` directly. Works on the
    device of `s0` (numpy on the CPU, torch elsewhere; `backend` forces one). `refine=False` stops
    after the eps-bisection and projects on the masks at the ends of the final bracket."""
    if (alpha is None) == (kappa is None):
        raise ValueError("COPS: give exactly one of alpha (the balance factor) and kappa (the constraint)")
    if alpha is not None and not (0.0 <= alpha < 1.0):
        raise ValueError(f"COPS: the balance factor alpha must lie in [0, 1); got {alpha}")
    if projection not in ("plus", "minus"):
        raise ValueError(f"COPS: projection must be 'plus' (feasible m+) or 'minus' (m-); got '{projection}'")
    if not eps > 0:
        raise ValueError(f"COPS: the numerical precision eps must be > 0; got {eps}")
    s0, s1 = s0.reshape(-1), s1.reshape(-1)
    if s0.numel() != s1.numel():
        raise ValueError(f"COPS: target and control scores differ in length ({s0.numel()} vs {s1.numel()})")
    device = s0.device
    ops = ops_for(device, backend)
    x0, x1 = ops.asarray(s0), ops.asarray(s1.to(device))
    scales = (ops.abs_max(x0), ops.abs_max(x1))
    if not all(math.isfinite(v) for v in scales):
        raise ValueError("COPS: the scores contain NaN or inf values")
    if int(d) < 0:
        raise ValueError(f"COPS: the sparsity constraint d must be >= 0; got {d}")
    d = min(int(d), len(x0))
    messages: list[str] = []

    # line 1: kappa_min (4.27) from the control score alone, kappa = alpha * kappa_min (4.28)
    kmin = kappa_min(ops, x1, d)
    slater_fails = False
    if alpha is not None:
        kap = alpha * kmin
        active = alpha > 0.0 and kmin < 0.0
        if alpha > 0.0 and kmin == 0.0 and d > 0:
            messages.append(
                "kappa_min = 0: no entry has a positive control importance, so kappa = alpha * kappa_min = 0 "
                "is the alpha = 0 case (no constraint); the mask is the target-only mask"
            )
    else:
        kap = float(kappa)
        tol = 1e-12 * abs(kmin)
        if kap < kmin - tol:
            raise ValueError(f"COPS: kappa = {kap} < kappa_min = {kmin}: no mask with at most d entries satisfies S1(m) <= kappa")
        active = True
        slater_fails = kap <= kmin + tol and d > 0
    out = dict(alpha=alpha, projection=projection, d=d, messages=messages, with_masks=with_masks,
               kappa=kap, kappa_min=kmin)
    if slater_fails:
        messages.append("kappa = kappa_min: Slater's condition fails (lam* = infinity); the mask is the limit of "
                        "lam -> infinity (the control-only mask, ties broken by the target score)")
        return _limit_result(ops, x0, x1, d, out)

    # lines 2-3: I_0 gives g'(0); g'(0) <= 0 (or no constraint) means lam* = 0. On large problems
    # g'(0) > 0 usually follows from g'(a) > 0 at the lower end of the first bracket (monotonicity).
    cands = CandidateSet(ops, x0, x1, d, scales)
    known: dict[float, tuple[float, float]] = {}
    if d == 0 or not active:
        return _zero_result(cands, known, out)
    # g'(inf) = kappa_min - kappa < 0: lam* < inf. Bracket it and shrink the candidates to the bracket.
    a, b = find_bracket(cands, kap, alpha, known, messages)
    if a == 0.0 and known[0.0][1] - kap <= 0.0:
        return _zero_result(cands, known, out)
    if b is None:
        return _limit_result(ops, x0, x1, d, out, evals=cands.evaluations)

    # lines 6-19: lam_plus and the bisection, then the kink lam* of the final bracket
    search = LambdaSearch(cands, known, kap, a, b)
    search.narrow()
    search.find_lam_plus(b)
    search.bisect(eps)
    if search.exact is None:
        (L, sL), (R, sR), lam_star = search.kink(refine)
    run = dict(lam_plus=search.lam_plus, steps=search.steps, active=True, **out)
    if search.exact is not None:  # g'(lam) = 0: S1(m_lam) = kappa, lam is optimal and m+ = m-
        lam = search.exact
        m = cands.full_mask(cands.selection(lam))
        # lam_b = 0: found before any bisection step (bracket end, regula falsi or lam_plus)
        return make_result(m, known[lam], lam=lam, lam_b=search.lam_b or lam, evals=cands.evaluations,
                           cand=cands.size, **run)
    # m- (left piece, S1 > kappa) and m+ (right piece, S1 < kappa), Theorem 4.3.1
    selL, selR = cands.selection(L), cands.selection(R)
    swap = None
    if refine:
        selL, selR, sL, sR, swap = one_swap(cands, selL, selR, sL, sR, kap)
    # the relaxed optimum p* = S0(gamma m- + (1 - gamma) m+) with S1 = kappa: the LP optimum (4.13)
    gamma = (kap - sR[1]) / (sL[1] - sR[1])
    p_star = sR[0] + gamma * (sL[0] - sR[0])
    g_star = lagrangian(sR, lam_star, kap)  # g(lam*) on the piece of m+, (4.18)
    return make_result(cands.full_mask(selR), sR, cands.full_mask(selL), sL, lam=lam_star, lam_b=search.lam_b,
                       evals=cands.evaluations, cand=cands.size, p_star=p_star, g_star=g_star, swap=swap, **run)


def _zero_result(cands: CandidateSet, known, out) -> CopsResult:
    """lam* = 0, the constraint inactive: the target-only mask m(0) = d-idxmin{s0 < 0}."""
    st = known[0.0] if 0.0 in known else cands.evaluate(0.0)
    m = cands.full_mask(cands.selection(0.0))
    return make_result(m, st, lam=0.0, lam_b=0.0, lam_plus=0.0, steps=0, evals=cands.evaluations,
                       active=False, cand=cands.size, **out)


def _limit_result(ops, x0, x1, d, out, evals: int = 0) -> CopsResult:
    """lam* = infinity (or beyond 2^80): the control-only mask, ties broken by the target."""
    sel = limit_mask(ops, x0, x1, d)
    st = (ops.masked_sum(x0, sel), ops.masked_sum(x1, sel))
    return make_result(ops.to_torch(sel), st, lam=math.inf, lam_b=math.inf, lam_plus=math.inf, steps=0, evals=evals,
                       cand=0, **out)


def cops_mask(target_importance: torch.Tensor, control_importance: torch.Tensor, d: int, alpha: float,
              eps: float = EPS_N, projection: str = "plus", backend: Optional[str] = None,
              with_masks: bool = False) -> CopsResult:
    """COPS from two importance vectors (higher = more important, as the scores API returns them):
    normalise both to ||s||_1 = 1 in the minimisation convention and run Algorithm 4.1."""
    s0, msg0 = normalise(target_importance, "target")
    s1, msg1 = normalise(control_importance, "control")
    res = solve(s0, s1, d, alpha=alpha, eps=eps, projection=projection, backend=backend, with_masks=with_masks)
    res.messages[:0] = [m for m in (msg0, msg1) if m]
    return res
