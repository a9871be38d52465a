"""SGD with momentum and the parameter groups the mask semantics need (see sparsity/enforce.py)."""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp.sparsity.enforce import MaskEnforcer


def build_optimizer(model: nn.Module, enforcer: MaskEnforcer, tcfg) -> torch.optim.SGD:
    """Three groups: masked prunable parameters (decay folded into their gradient by the enforcer),
    parameters flagged `_sx_no_decay` (e.g. filter bases without decay, appendix B.3), the rest."""
    masked_ids = {id(p) for p in enforcer.params.values()} if enforcer.active else set()
    masked, no_decay, decay = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in masked_ids:
            masked.append(p)
        elif getattr(p, "_sx_no_decay", False):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": tcfg.weight_decay},
        {"params": masked, "weight_decay": 0.0},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=tcfg.lr, momentum=tcfg.momentum, nesterov=tcfg.nesterov)
