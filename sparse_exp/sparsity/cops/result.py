"""`CopsResult`: the mask COPS returns, with the figures of Algorithm 4.1 that produced it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass
class CopsResult:
    mask: torch.Tensor  # the projected mask (m_plus by default), bool, flat, on the input device
    projection: str  # plus | minus
    d: int  # the sparsity constraint (entries kept at most)
    kept: int  # entries kept by `mask`
    alpha: Optional[float]  # balance factor (None when kappa was given directly)
    kappa: float
    kappa_min: float
    constraint_active: bool  # False: alpha = 0, kappa_min = 0 or g'(0) <= 0 (lam* = 0)
    lam: float  # lam*, the maximiser of the dual function (the kink of g, to rounding)
    lam_bisection: float  # the last Algorithm-4.1 midpoint (within eps of lam*)
    lam_plus: float  # the automatic upper bound of the bisection, g'(lam_plus) <= 0
    steps: int  # bisection steps k of Algorithm 4.1
    evaluations: int  # superderivatives g'(lam) actually computed (the others follow from monotonicity)
    s0: float  # S0(mask)
    s1: float  # S1(mask)
    s0_plus: float
    s1_plus: float
    s0_minus: float
    s1_minus: float
    relaxed_objective: float  # p* of the LP (4.13): S0(gamma m_minus + (1 - gamma) m_plus), S1 = kappa
    dual_value: float  # g(lam*) = p* by strong duality
    swap: Optional[tuple[Optional[int], Optional[int]]]  # (i_plus, i_minus): supp m+ \ m-, supp m- \ m+
    mask_plus: Optional[torch.Tensor] = None
    mask_minus: Optional[torch.Tensor] = None
    candidates: int = 0  # size of the candidate set the bisection ended on
    messages: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The figures logged per run (metrics.json `cops`)."""
        return {
            "s0": self.s0, "s1": self.s1, "kappa": self.kappa, "kappa_min": self.kappa_min,
            "lambda": self.lam, "steps": self.steps, "d": self.d, "kept": self.kept,
            "constraint_active": self.constraint_active, "relaxed_objective": self.relaxed_objective,
            "lambda_plus": self.lam_plus, "evaluations": self.evaluations,
        }


def make_result(mask_p, sp, mask_m=None, sm=None, *, lam, lam_b, lam_plus, steps, evals, cand, active=True,
                p_star=None, g_star=None, swap=None,
                alpha, projection, d, messages, with_masks, kappa, kappa_min) -> CopsResult:
    """The result from m+ (mask_p, its scores sp = (S0, S1)) and m- (mask_m, sm). Without m-, the
    single mask m+ = m- is optimal for the LP as it is (g'(lam) = 0, lam* = 0 or lam -> infinity) and
    its S0 is p* and g(lam*)."""
    if mask_m is None:
        mask_m, sm = mask_p, sp
        p_star = g_star = sp[0]
    mask, st = (mask_p, sp) if projection == "plus" else (mask_m, sm)
    kept = int(torch.count_nonzero(mask))
    if kept < d:
        messages.append(
            f"only {kept} of the d = {d} entries have a negative combined score s0 + lam s1 at lam = {lam:.6g}; "
            f"problems (4.7)/(4.11) never keep an entry that does not lower the score, so the mask keeps {kept}"
        )
    return CopsResult(
        mask=mask, projection=projection, d=d, kept=kept, alpha=alpha, kappa=kappa, kappa_min=kappa_min,
        constraint_active=active, lam=lam, lam_bisection=lam_b, lam_plus=lam_plus, steps=steps, evaluations=evals,
        s0=st[0], s1=st[1], s0_plus=sp[0], s1_plus=sp[1], s0_minus=sm[0], s1_minus=sm[1],
        relaxed_objective=p_star, dual_value=g_star, swap=swap,
        mask_plus=mask_p if with_masks else None, mask_minus=mask_m if with_masks else None,
        candidates=cand, messages=messages,
    )
