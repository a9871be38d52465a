"""Training-time scalars of interspace models (Fig. 5.6a, IP appendix Fig. A3b, eq. A.1).

`InterspaceProbe` is a session probe (training/session.py: called every `trainer.log_every` steps
after the optimizer step, its scalars go to TensorBoard):

* fb/cos_sim/<basis>          mean |cos| between distinct elements of the basis (eq. A.1; the mean
                              over the G bases of an in_nc/out_nc entry)
* fb/grad_l2/spatial          ||dL/dW|| over all composed spatial weights of FB layers
* fb/grad_l2/coeff            ||dL/dbeta|| over the trained coefficients (dL/dbeta = <F, dL/dW>,
                              eq. 5.9, times the mask; loss gradient without weight decay)
* fb/grad_l2/basis            ||dL/dF|| over all bases (eq. 5.10)
* fb/grad_l2_x_lr/<same>      the three norms times the learning rate (the y-axis of Fig. 5.6a)

The spatial gradient dL/dW is captured by a tensor hook that the FB layers register only while
their `record_spatial_grad` flag is on, which the probe switches on for the model it watches.
"""
from __future__ import annotations

import torch

from sparse_exp.layers.bases import mean_abs_cosine
from sparse_exp.layers.interspace import SPATIAL_GRADS, fb_layers


def basis_similarities(model) -> dict[str, float]:
    """Basis key -> eq. A.1 (mean over the G bases of the entry)."""
    bases = getattr(model, "fb_bases", None)
    return {} if bases is None else {key: float(mean_abs_cosine(p).mean()) for key, p in bases.items()}


class InterspaceProbe:
    def __init__(self, model):
        self.model = model
        for _, layer in fb_layers(model):
            layer.record_spatial_grad = True

    def __call__(self, trainer) -> dict[str, float]:
        out = {f"fb/cos_sim/{k}": v for k, v in basis_similarities(self.model).items()}
        scale = trainer.scaler.get_scale() if trainer.scaler.is_enabled() else 1.0  # hooks see scaled grads
        masks = {id(p): trainer.enforcer.mask.masks[n] for n, p in trainer.enforcer.params.items()} if trainer.enforcer.active else {}
        spatial_sq, coeff_sq = 0.0, 0.0
        seen = False
        for _, layer in fb_layers(self.model):
            grad_w = SPATIAL_GRADS.get(layer)
            if grad_w is None:
                continue
            seen = True
            grad_w = grad_w / scale
            spatial_sq += float(grad_w.double().pow(2).sum())
            with torch.enable_grad():  # dL/dbeta = VJP of the composition (eq. 5.9)
                beta = layer.coeff.detach().requires_grad_(True)
                (grad_beta,) = torch.autograd.grad(layer.spatial_weight(beta), beta, grad_w)
            mask = masks.get(id(layer.coeff))
            if mask is not None:
                grad_beta = grad_beta * mask
            coeff_sq += float(grad_beta.double().pow(2).sum())
        if seen:
            basis_sq = sum(float(p.grad.double().pow(2).sum()) for p in self.model.fb_bases.values() if p.grad is not None)
            norms = {"spatial": spatial_sq**0.5, "coeff": coeff_sq**0.5, "basis": basis_sq**0.5}
            lr = trainer.lr
            for k, v in norms.items():
                out[f"fb/grad_l2/{k}"] = v
                out[f"fb/grad_l2_x_lr/{k}"] = v * lr
        return out
