"""The baseline COPS is compared with (section 4.4.4): a fixed linear combination of the two scores."""
from __future__ import annotations

from typing import Optional

import torch

from .selection import select_smallest


def linear_combination(s0: torch.Tensor, s1: torch.Tensor, d: int, lam: float, backend: Optional[str] = None) -> torch.Tensor:
    """The baseline of section 4.4.4, eq. (4.34): the d best of S0 + lam S1 (d-idxmin of s0 + lam s1 < 0).

    By duality, at lam = lam* this is one of the COPS masks m+/m- (for kappa = S1 of the mask)."""
    if not lam >= 0:
        raise ValueError(f"COPS: lam must be >= 0; got {lam}")
    return select_smallest(s0.reshape(-1).to(torch.float64) + lam * s1.reshape(-1).to(torch.float64), d, backend)
