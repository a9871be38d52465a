"""SynFlow (Tanaka et al.; thesis eq. 2.47, appendix F.4, G.4): synaptic saliency θ ⊙ dR/dθ of the
L1 path norm R = 1ᵀ(∏ |W_l|)1, computed on a copy of the network with all parameters and buffers
made non-negative, BatchNorm in eval mode and an all-ones input of the data's shape.

Iterative pruning: `synflow_rounds` rounds, after round k keeping (1 - q)^(k/rounds) of the weights
(eq. A.81), each round scoring the network masked by the previous round.

Numerics: products of absolute weights along every path overflow or underflow float32 in deep
networks (LESSONS). `synflow_dtype=float64` always computes in double; `auto` (default) computes in
float32 while R stays within [1e-30, 1e30] and switches to float64 for good as soon as it does
not, which keeps VGG-16's 100 rounds fast on a CPU and ResNets safe.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from sparse_exp.models.base import prunable_parameters
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.scores.context import ScoreContext

SAFE_RANGE = (1e-30, 1e30)


class PathNorm:
    """A linearised copy of the model that evaluates R and dR/dθ for a given mask."""

    def __init__(self, ctx: ScoreContext, dtype: torch.dtype):
        self.dtype = dtype
        self.net = copy.deepcopy(ctx.model).to(dtype).eval()
        with torch.no_grad():
            for t in self.net.state_dict().values():
                if t.is_floating_point():
                    t.abs_()
        self.params = prunable_parameters(self.net)
        self.abs_weights = {n: p.detach().clone() for n, p in self.params.items()}
        self.input = torch.ones((1, *ctx.input_shape), dtype=dtype, device=ctx.device)

    def scores(self, mask: dict[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], float]:
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.abs_weights[n] if mask is None else self.abs_weights[n] * mask[n])
        R = self.net(self.input).sum()
        grads = torch.autograd.grad(R, list(self.params.values()))
        out = {n: (g * p.detach()).abs() for (n, p), g in zip(self.params.items(), grads)}
        return out, float(R.detach())


def _dtype(ctx: ScoreContext) -> torch.dtype:
    return torch.float64 if getattr(ctx.cfg, "synflow_dtype", "auto") == "float64" else torch.float32


def _scores_checked(ctx: ScoreContext, state: dict, mask) -> dict[str, torch.Tensor]:
    """Score with the current PathNorm; fall back to float64 if float32 leaves the safe range."""
    scores, R = state["net"].scores(mask)
    safe = math.isfinite(R) and SAFE_RANGE[0] <= abs(R) <= SAFE_RANGE[1]
    if not safe and state["net"].dtype != torch.float64:
        if getattr(ctx.cfg, "synflow_dtype", "auto") == "float32":
            raise FloatingPointError(f"SynFlow path norm R = {R} outside float32's safe range; use method.synflow_dtype=float64")
        state["net"] = PathNorm(ctx, torch.float64)
        state["switched"] = True
        scores, R = state["net"].scores(mask)
    state["R"] = R
    return scores


def synflow(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """One-shot SynFlow scores of the (masked) model, float32 tensors on the model's device."""
    state = {"net": PathNorm(ctx, _dtype(ctx))}
    mask = None if ctx.mask is None else {n: m.to(state["net"].dtype) for n, m in ctx.mask.items()}
    scores = _scores_checked(ctx, state, mask)
    return {n: s.float() for n, s in scores.items()}


def synflow_iterative(ctx: ScoreContext, keep: int) -> tuple[Mask, dict]:
    """Iterative SynFlow down to exactly `keep` weights; returns the mask and a few diagnostics.

    Pruned entries never come back: each round ranks only the entries still alive (a compacted
    index set), so selection costs shrink with the density."""
    rounds = int(getattr(ctx.cfg, "synflow_rounds", 100))
    names = list(ctx.params)
    sizes = [ctx.params[n].numel() for n in names]
    D = sum(sizes)
    state = {"net": PathNorm(ctx, _dtype(ctx)), "switched": False}
    alive = np.arange(D)  # flat indices of the weights still kept
    density = keep / D if D else 1.0
    for k in range(1, rounds + 1):
        # eq. A.81: after round k the pruning rate is 1 - (1 - q)^(k / rounds)
        target = keep if k == rounds else max(keep, int(math.floor(D * density ** (k / rounds))))
        keep_flat = np.zeros(D, dtype=bool)
        keep_flat[alive] = True
        mask = _unflatten(torch.from_numpy(keep_flat), ctx, state["net"].dtype)
        scores = _scores_checked(ctx, state, mask)
        flat = torch.cat([scores[n].reshape(-1) for n in names]).cpu().numpy()
        alive_scores = flat[alive]
        if target < alive.size:
            # keep the `target` largest alive scores, ties to lower index (alive is sorted)
            thr = np.partition(alive_scores, alive.size - target)[alive.size - target]
            chosen = alive_scores > thr
            missing = target - int(np.count_nonzero(chosen))
            if missing > 0:
                chosen[np.flatnonzero(alive_scores == thr)[:missing]] = True
            alive = alive[chosen]
    keep_flat = np.zeros(D, dtype=bool)
    keep_flat[alive] = True
    final = Mask.from_flat(torch.from_numpy(keep_flat).to(ctx.device), ctx.params)
    return final, {"rounds": rounds, "final_R": state.get("R"), "float64": state["net"].dtype == torch.float64}


def _unflatten(keep: torch.Tensor, ctx: ScoreContext, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for n, p in ctx.params.items():
        out[n] = keep[offset : offset + p.numel()].view(p.shape).to(device=p.device, dtype=dtype)
        offset += p.numel()
    return out
