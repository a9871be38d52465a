"""RigL (Evci et al.; IP appendix G.3): SET's driver with gradient-based regrowth.

At an update step the dense gradient of the step's batch - dL/dtheta for every entry, pruned ones
included, read in `after_backward` before the trainer masks it - is kept as |g|; after the
optimizer step each layer drops its p_t smallest-magnitude weights (eq. A.77) and regrows as many
where |g| is largest. Default update interval 4,000 steps (appendix G.3, after Liu et al.).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sparse_exp.methods.base import register_method
from sparse_exp.methods.set import DSTConfig, DynamicSparse
from sparse_exp.sparsity.dst import GrowScore


@dataclass
class RigLConfig(DSTConfig):
    name: str = "rigl"
    update_every: int = 4000


@register_method("rigl", RigLConfig)
class RigL(DynamicSparse):
    def __init__(self, cfg):
        super().__init__(cfg)
        self._grads: Optional[dict[str, torch.Tensor]] = None

    def needs_dense_gradients(self, trainer, step: int) -> bool:
        # `step` iterations are done; this backward belongs to iteration step + 1, an update step?
        return not ((step + 1) % self.every or step + 1 >= self.end_step(trainer))

    def after_backward(self, trainer, step: int) -> None:
        if not self.needs_dense_gradients(trainer, step):
            return
        with torch.no_grad():
            self._grads = {n: p.grad.detach().abs() if p.grad is not None else torch.zeros_like(p)
                           for n, p in trainer.session.params.items()}

    def grow_score(self, trainer, step: int) -> GrowScore:
        grads = self._grads
        if grads is None:  # cannot happen in a trainer run: after_backward of this step stored them
            raise RuntimeError(f"rigl: no dense gradient stored for the update at step {step}")
        self._grads = None
        return lambda name, p: grads[name]


__all__ = ["RigL", "RigLConfig"]
