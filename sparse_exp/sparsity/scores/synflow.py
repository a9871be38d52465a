"""SynFlow (Tanaka et al.; thesis eq. 2.47, appendix F.4, G.4): synaptic saliency θ ⊙ dR/dθ of the
L1 path norm R = 1ᵀ(∏ |W_l|)1, computed on a copy of the network with all parameters and buffers
made non-negative, BatchNorm in eval mode and an all-ones input of the data's shape.

Iterative pruning: `synflow_rounds` rounds, after round k keeping (1 - q)^(k/rounds) of the weights
(eq. A.81), each round scoring the network masked by the previous round; the per-round counts are
rounded as in the reference code (`round_keep`).

Numerics: products of absolute weights along every path overflow or underflow float32 in deep
networks. `synflow_dtype=float64` always computes in double; `auto` (default) computes in
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
from sparse_exp.sparsity.scores.survivors import Survivors

SAFE_RANGE = (1e-30, 1e30)


class PathNorm:
    """A linearised copy of the model that evaluates R and dR/dθ; pruning zeroes its weights in place."""

    def __init__(self, ctx: ScoreContext, dtype: torch.dtype):
        self.dtype = dtype
        self.net = copy.deepcopy(ctx.model).to(dtype).eval()
        with torch.no_grad():
            for t in self.net.state_dict().values():
                if t.is_floating_point():
                    t.abs_()
        self.params = prunable_parameters(self.net)
        self.input = torch.ones((1, *ctx.input_shape), dtype=dtype, device=ctx.device)

    @torch.no_grad()
    def apply_mask(self, mask: dict[str, torch.Tensor]) -> None:
        for n, p in self.params.items():
            p.mul_(mask[n].to(device=p.device, dtype=p.dtype))

    def gradients(self) -> tuple[dict[str, torch.Tensor], float]:
        R = self.net(self.input).sum()
        grads = torch.autograd.grad(R, list(self.params.values()))
        return dict(zip(self.params, grads)), float(R.detach())

    def scores(self) -> tuple[dict[str, torch.Tensor], float]:
        grads, R = self.gradients()
        # all factors are non-negative, so θ ⊙ dR/dθ needs no abs
        return {n: g * self.params[n].detach() for n, g in grads.items()}, R


def _dtype(ctx: ScoreContext) -> torch.dtype:
    return torch.float64 if getattr(ctx.cfg, "synflow_dtype", "auto") == "float64" else torch.float32


def _scores_checked(ctx: ScoreContext, state: dict, restore) -> None:
    """dR/dθ of the current PathNorm into state["grads"]; if float32 leaves the safe range,
    rebuild the net in float64, re-apply the pruning so far (`restore(net)`) and try again."""
    grads, R = state["net"].gradients()
    safe = math.isfinite(R) and SAFE_RANGE[0] <= abs(R) <= SAFE_RANGE[1]
    if not safe and state["net"].dtype != torch.float64:
        if getattr(ctx.cfg, "synflow_dtype", "auto") == "float32":
            raise FloatingPointError(f"SynFlow path norm R = {R} outside float32's safe range; use method.synflow_dtype=float64")
        state["net"] = PathNorm(ctx, torch.float64)
        restore(state["net"])
        grads, R = state["net"].gradients()
    state["grads"], state["R"] = grads, R


def synflow(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """One-shot SynFlow scores of the (masked) model, float32 tensors on the model's device."""
    state = {"net": PathNorm(ctx, _dtype(ctx))}

    def restore(net: PathNorm) -> None:
        if ctx.mask is not None:
            net.apply_mask(ctx.mask)

    restore(state["net"])
    _scores_checked(ctx, state, restore)
    net = state["net"]
    return {n: (g * net.params[n].detach()).float() for n, g in state["grads"].items()}


def round_keep(D: int, keep: int, k: int, rounds: int, q: float) -> int:
    """Weights kept after round k of `rounds`, counted exactly as SynFlow's reference code (Tanaka et
    al.'s prune loop) counts them: density d_k = (1 - q)^(k / rounds) (eq. A.81) and int((1 - d_k) D)
    weights pruned, i.e. D - int((1 - d_k) D) kept; the last round keeps `keep` = floor((1 - q) D), as
    every method does. SynFlow's ranking is so sensitive that flooring d_k D instead (one weight more
    or less in some rounds) changes ~3% of LeNet-5's final kept weights at q = 0.99 (tests/test_fidelity.py)."""
    if k >= rounds:
        return keep
    d_k = (1.0 - q) ** (k / rounds)
    return min(D, max(keep, D - int((1.0 - d_k) * D)))


def synflow_iterative(ctx: ScoreContext, keep: int, q: float | None = None) -> tuple[Mask, dict]:
    """Iterative SynFlow down to exactly `keep` weights; returns the mask and a few diagnostics.

    Pruned entries never come back: they are zeroed in the linearised network and only the live
    ones are ranked (exact, ties to the lower index; scores/survivors.py picks the cheaper exact
    selection for the density). The path norm and its gradient come from the run's device, the
    ranking runs on the host; the forward/backward passes dominate."""
    rounds = int(getattr(ctx.cfg, "synflow_rounds", 100))
    names = list(ctx.params)
    offsets = np.cumsum([0] + [ctx.params[n].numel() for n in names])
    D = int(offsets[-1])
    state = {"net": PathNorm(ctx, _dtype(ctx))}
    survivors = Survivors(D)

    def zero(net: PathNorm, flat_indices: np.ndarray) -> None:
        """Prune sorted flat indices in the linearised network (split per layer by bisection)."""
        cuts = np.searchsorted(flat_indices, offsets)
        with torch.no_grad():
            for i, p in enumerate(net.params.values()):
                local = flat_indices[cuts[i] : cuts[i + 1]] - offsets[i]
                if local.size:
                    p.view(-1)[torch.from_numpy(local).to(p.device)] = 0

    def restore(net: PathNorm) -> None:  # re-apply the pruning so far to a rebuilt (float64) net
        zero(net, np.flatnonzero(~survivors.alive))

    q = 1.0 - keep / D if q is None and D else (q or 0.0)
    kept_per_round: list[int] = []
    scores = None  # one host buffer for all rounds (a fresh 60 MB tensor per round costs page faults)
    for k in range(1, rounds + 1):
        # eq. A.81: after round k the pruning rate is 1 - (1 - q)^(k / rounds)
        target = round_keep(D, keep, k, rounds, q)
        kept_per_round.append(target)
        if target >= survivors.count:
            continue
        _scores_checked(ctx, state, restore)
        net, grads = state["net"], state["grads"]
        if scores is None or scores.dtype != net.dtype:
            scores = torch.empty(D, dtype=net.dtype)
        for i, n in enumerate(names):  # θ ⊙ dR/dθ, written straight into the buffer
            chunk = scores[offsets[i] : offsets[i + 1]]
            g, p = grads[n].reshape(-1), net.params[n].detach().reshape(-1)
            if g.device.type == "cpu":
                torch.mul(g, p, out=chunk)
            else:
                chunk.copy_(g * p)
        zero(net, survivors.drop(scores.numpy(), survivors.count - target))
    final = Mask.from_flat(torch.from_numpy(survivors.alive.copy()).to(ctx.device), ctx.params)
    return final, {"rounds": rounds, "final_R": state.get("R"), "float64": state["net"].dtype == torch.float64,
                   "kept_per_round": kept_per_round}
