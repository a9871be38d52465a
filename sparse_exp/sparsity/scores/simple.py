"""Data-free scores: random (eq. 4.2, |z| with z ~ N(0, 1)) and magnitude (|θ|, eq. 2.41 / A.41)."""
from __future__ import annotations

import torch

from sparse_exp.sparsity.scores.context import ScoreContext


def random(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    # Drawn on the CPU from the method's stream, so the mask is the same on every device.
    return {n: torch.randn(p.shape, generator=ctx.generator).abs().to(p.device) for n, p in ctx.params.items()}


def magnitude(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    return {n: p.detach().abs().clone() for n, p in ctx.params.items()}
