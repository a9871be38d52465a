"""The optimizer (`trainer.optimizer`: SGD with momentum as in the papers, Adam, AdamW) and the
parameter groups the mask semantics need (see sparsity/enforce.py).

Three groups, always in this order and always present (possibly empty), so an optimizer state
saved under one mask mode loads under another (an LTH rewind point is saved while training densely
and restored for a pruned round):

    decay      biases, BatchNorm, ...: the optimizer's own weight decay
    prunable   the masked parameters: no optimizer decay when a mask is active (the enforcer folds
               the decay into their gradient, or for AdamW applies it decoupled to the trained
               entries only), the optimizer's decay in dense mode
    no_decay   parameters flagged `_sx_no_decay` (e.g. filter bases without decay, appendix B.3)
"""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp.kernels.update import kept_entry_sgd_
from sparse_exp.sparsity.enforce import MaskEnforcer

ROLES = ("decay", "prunable", "no_decay")
OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(model: nn.Module, enforcer: MaskEnforcer, tcfg) -> torch.optim.Optimizer:
    prunable_ids = {id(p) for p in enforcer.params.values()}
    exempt = decay_exempt(model, tcfg) - prunable_ids
    groups: dict[str, list] = {role: [] for role in ROLES}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in prunable_ids:
            groups["prunable"].append(p)
        elif getattr(p, "_sx_no_decay", False) or id(p) in exempt:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    param_groups = [{"params": groups[role], "role": role} for role in ROLES]
    kind = getattr(tcfg, "optimizer", "sgd")
    if kind == "sgd":
        optimizer = torch.optim.SGD(param_groups, lr=tcfg.lr, momentum=tcfg.momentum, nesterov=tcfg.nesterov)
        # layers on sparse kernels step at their trained entries only (kernels/update.py)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: kept_entry_sgd_(opt, enforcer))
        enforcer.kept_entry_step = True
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        optimizer = cls(param_groups, lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps)
    if kind == "adamw":
        enforcer.decoupled = True

        def decay_masked(opt, args, kwargs):  # runs inside step(), so a step GradScaler skips decays nothing
            enforcer.decoupled_decay_(next(g["lr"] for g in opt.param_groups if g["role"] == "prunable"))

        optimizer.register_step_pre_hook(decay_masked)
    configure_decay(optimizer, enforcer, tcfg.weight_decay)
    return optimizer


def configure_decay(optimizer: torch.optim.Optimizer, enforcer: MaskEnforcer, weight_decay: float) -> None:
    """Set each group's optimizer weight decay for the current mask mode (also after loading a state)."""
    for group in optimizer.param_groups:
        role = group.get("role", "decay")
        if role == "decay":
            group["weight_decay"] = weight_decay
        elif role == "prunable":
            group["weight_decay"] = weight_decay if enforcer.decay_in_optimizer() else 0.0
        else:
            group["weight_decay"] = 0.0


# ---- weight decay on BatchNorm parameters and biases (trainer.batchnorm_weight_decay / bias_weight_decay)
def decay_exempt(model: nn.Module, tcfg) -> set[int]:
    """ids of the parameters the setup trains without weight decay (they join the no_decay group):
    BatchNorm weights and biases with trainer.batchnorm_weight_decay=false, the biases of every other
    layer with trainer.bias_weight_decay=false. The papers are silent; the presets follow the code
    each setup comes from (conf/trainer/*.yaml)."""
    exempt: set[int] = set()
    for module in model.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if is_bn and not getattr(tcfg, "batchnorm_weight_decay", True):
            exempt.update(id(p) for p in module.parameters(recurse=False))
        elif not is_bn and not getattr(tcfg, "bias_weight_decay", True):
            bias = getattr(module, "bias", None)
            if isinstance(bias, nn.Parameter):
                exempt.add(id(bias))
    return exempt
