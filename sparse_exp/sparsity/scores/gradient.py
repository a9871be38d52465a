"""Data-dependent scores from gradients: SNIP (eq. 3.1), USNIP and GraSP (appendix F.5, F.6, G.4).

All return the importance of each prunable entry (higher = keep):
  snip   |dL/dθ ⊙ θ|          loss summed over the scoring batches
  usnip  the same with labels drawn uniformly at random (an unsupervised SNIP, section 4.4.3)
  grasp  θ ⊙ (H g)            the official GraSP convention "remove the largest −θ⊙Hg" is the same
                              as "keep the largest θ⊙Hg"; logits divided by the temperature T=200
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sparse_exp.sparsity.scores.context import ScoreContext, scoring_state


def _bn_train(ctx: ScoreContext) -> bool:
    return getattr(ctx.cfg, "score_bn_mode", "train") == "train"


def _accumulated_gradients(ctx: ScoreContext, random_labels: bool) -> list[torch.Tensor]:
    weights = list(ctx.params.values())
    total = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches():
        if random_labels:
            y = torch.randint(ctx.num_classes, y.shape, generator=ctx.generator).to(y.device)
        loss = F.cross_entropy(ctx.model(x), y)
        grads = torch.autograd.grad(loss, weights)
        torch._foreach_add_(total, grads)
    return total


def snip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    with scoring_state(ctx.model, _bn_train(ctx)):
        grads = _accumulated_gradients(ctx, random_labels=False)
    return {n: (g * w.detach()).abs() for (n, w), g in zip(ctx.params.items(), grads)}


def usnip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    with scoring_state(ctx.model, _bn_train(ctx)):
        grads = _accumulated_gradients(ctx, random_labels=True)
    return {n: (g * w.detach()).abs() for (n, w), g in zip(ctx.params.items(), grads)}


def hessian_gradient_product(ctx: ScoreContext) -> list[torch.Tensor]:
    """H·g with g the gradient summed over the scoring batches: one pass for g, then per batch the
    double backpropagation d<dL/dθ, g>/dθ (eqs. A.78-A.80), batch by batch to bound memory."""
    T = float(getattr(ctx.cfg, "grasp_temperature", 200.0))
    weights = list(ctx.params.values())
    batches = ctx.batches()
    g = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(ctx.model(x) / T, y)
        torch._foreach_add_(g, torch.autograd.grad(loss, weights))
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(ctx.model(x) / T, y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((gi * gv).sum() for gi, gv in zip(grads, g))
        torch._foreach_add_(hg, torch.autograd.grad(z, weights))
    return hg


def grasp(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    with scoring_state(ctx.model, _bn_train(ctx)):
        hg = hessian_gradient_product(ctx)
    return {n: w.detach() * h for (n, w), h in zip(ctx.params.items(), hg)}
