"""How a mask acts during training; decided once here for every method and every optimizer.

* prune:  masked entries are exactly zero from step 0 and stay zero: they are zeroed in place, their
          gradient and SGD momentum are zero, and weight decay on them is zero because the entry is.
* freeze: masked entries keep their initial value bit for bit: the gradient *and* the weight decay
          term are masked before the optimizer sees them, so SGD's momentum buffer stays exactly 0
          there and `p - lr * 0` leaves p unchanged. FreezeNet-WD (section 3.4.1.2) is the
          explicit exception: `decay_frozen=True` lets weight decay (only) shrink frozen entries.
* dense:  no masking at all (zero overhead for the dense baseline).

Masked parameters sit in an optimizer group with weight_decay=0; their decay is folded into the
gradient here (g <- (g + wd * p) * m, or g * m + wd * p for FreezeNet-WD), two fused foreach ops
per step and nothing in the forward pass. That is SGD's and Adam's (coupled, L2) weight decay.
AdamW decays decoupled from the gradient, p <- p - lr * wd * p, which would move frozen weights:
with `decoupled=True` (training/optim.py sets it for AdamW) the gradient is only masked and
`decoupled_decay_` shrinks the trained entries alone (all entries for FreezeNet-WD) right before
the optimizer step.

Optimizer state (SGD's momentum, Adam's first and second moments) is zeroed at every masked entry
whenever the mask changes, and for regrown entries, so that a zero gradient there means a zero
update: pruned entries stay exactly 0 and frozen entries keep their bits under every optimizer.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from sparse_exp.sparsity.mask import Mask

MODES = ("dense", "prune", "freeze")


def _entry_state(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer's per-entry state of `p` (momentum buffer, Adam's moments), not step counters."""
    return [v for v in optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor) and v.shape == p.shape]


class MaskEnforcer:
    def __init__(
        self,
        params: Mapping[str, nn.Parameter],
        mask: Mask,
        mode: str,
        weight_decay: float,
        decay_frozen: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mask mode '{mode}' is not one of {MODES}")
        self.params = dict(params)
        self.mode = mode
        self.weight_decay = weight_decay
        self.decay_frozen = decay_frozen
        self.decoupled = False  # AdamW's decoupled decay (see the module docstring)
        # id(parameter) -> flat positions of its trained entries, for the layers whose SGD step runs at those
        # entries only (kernels/update.py: sparse kernels fill it, training/optim.py's SGD hook sets
        # kept_entry_step); prepare_gradients leaves their gradient to that step
        self.kept_index: dict[int, torch.Tensor] = {}
        self.kept_entry_step = False
        self.mask = mask.check(self.params)
        self._refresh_float_masks()

    def _refresh_float_masks(self) -> None:
        self._plist = list(self.params.values())
        self._mlist = [self.mask.masks[n].to(device=p.device, dtype=p.dtype) for n, p in self.params.items()]

    @property
    def active(self) -> bool:
        return self.mode != "dense"

    def updates_only_trained_entries(self) -> bool:
        """Whether an optimizer step may skip the masked entries (kernels/update.py): true where they do not
        change at all, i.e. pruned entries and frozen ones without FreezeNet-WD's decay."""
        return self.mode == "prune" or (self.mode == "freeze" and not self.decay_frozen)

    def decay_in_optimizer(self) -> bool:
        """Whether the optimizer should apply weight decay to the masked parameters itself."""
        return not self.active

    @torch.no_grad()
    def apply_(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Make parameters and optimizer state consistent with the mask (call after any mask change)."""
        if self.mode == "prune":
            torch._foreach_mul_(self._plist, self._mlist)
        if optimizer is not None and self.active:
            for p, m in zip(self._plist, self._mlist):
                for buf in _entry_state(optimizer, p):
                    buf.mul_(m)

    @torch.no_grad()
    def prepare_gradients(self) -> None:
        """Called between backward() and optimizer.step()."""
        if not self.active:
            return
        params, masks = self._plist, self._mlist
        if self.kept_entry_step and self.kept_index:
            rest = [i for i, p in enumerate(params) if id(p) not in self.kept_index]
            params, masks = [params[i] for i in rest], [masks[i] for i in rest]
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
            for p, g in zip(params, grads):
                p.grad = g
        wd = 0.0 if self.decoupled else self.weight_decay
        if not grads:
            return
        if self.mode == "freeze" and self.decay_frozen:
            torch._foreach_mul_(grads, masks)
            if wd:
                torch._foreach_add_(grads, params, alpha=wd)
        else:
            if wd:
                torch._foreach_add_(grads, params, alpha=wd)
            torch._foreach_mul_(grads, masks)

    @torch.no_grad()
    def decoupled_decay_(self, lr: float) -> None:
        """AdamW's p <- p * (1 - lr * wd) on the trained entries only (all entries for FreezeNet-WD);
        called right before the optimizer step, whose own decay is off for these parameters."""
        if not (self.active and self.decoupled and self.weight_decay and lr):
            return
        step = lr * self.weight_decay
        if self.mode == "freeze" and self.decay_frozen:
            torch._foreach_mul_(self._plist, 1.0 - step)
        else:
            torch._foreach_mul_(self._plist, torch._foreach_add(torch._foreach_mul(self._mlist, -step), 1.0))

    @torch.no_grad()
    def trained_grad_l1(self) -> float:
        """Sum of |dL/dθ| over the trained prunable entries (Figs. 3.1, 3.5b): the loss gradient only,
        so call it before `prepare_gradients` folds the weight decay in."""
        pairs = [(p.grad, m) for p, m in zip(self._plist, self._mlist) if p.grad is not None and not p.grad.is_sparse]
        # a sparse gradient (sparse kernels, kernels/csr.py) holds the trained entries only
        kept = [p.grad._values() for p in self._plist if p.grad is not None and p.grad.is_sparse]
        if not pairs and not kept:
            return 0.0
        grads = [g for g, _ in pairs]
        if self.active and grads:
            grads = torch._foreach_mul(grads, [m for _, m in pairs])
        return float(torch.stack(torch._foreach_norm([*grads, *kept], 1)).sum())

    @torch.no_grad()
    def set_mask(self, mask: Mask, optimizer: torch.optim.Optimizer | None = None, regrown_value: float = 0.0) -> None:
        """Replace the mask (DST, GMP, LTH). Newly pruned entries become zero; regrown entries start at
        `regrown_value` (0, as SET/RigL prescribe) with zero momentum (appendix G.3)."""
        old = self.mask
        self.mask = mask.check(self.params)
        if self.mode == "prune":
            for name, p in self.params.items():
                grown = self.mask.masks[name] & ~old.masks[name].to(p.device)
                if bool(grown.any()):
                    p[grown] = regrown_value
                    if optimizer is not None:
                        for buf in _entry_state(optimizer, p):
                            buf[grown] = 0.0
        self._refresh_float_masks()
        self.apply_(optimizer)

    def trainable_counts(self) -> tuple[int, int]:
        """(trained prunable entries, all prunable entries)."""
        if not self.active:
            n = sum(p.numel() for p in self._plist)
            return n, n
        return self.mask.kept(), self.mask.numel()
