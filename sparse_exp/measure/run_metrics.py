"""The measurements every run adds to metrics.json, and the probes of interspace runs.

`attach_measurements(session)` (called by experiment.run) registers
* for every run: `sparse_kernels` - per masked layer, dense or which products ran on CSR kernels
  and the timings `trainer.sparse_kernels=auto` chose by (sparse_exp/kernels/plan.py);
* for every run: `flops` - theoretical forward FLOPs of the final model at its mask (measure/flops.py):
  dense (dense SP network), sparse, speedup = dense / sparse, overhead (IP basis-first part), layers,
  and `backward` - the same for the backward pass (IP appendix D.2);
* for interspace runs (sharing != none): the InterspaceProbe (measure/probes.py) and `interspace` -
  sharing, basis initialisation, basis parameters per key and in total, final eq. A.1 similarity of
  every basis, and the spatial density of the composed filters (fraction of non-zero entries of W
  over all FB layers: IP filters become spatially dense, Fig. 5.2).
"""
from __future__ import annotations

import logging

import torch

from sparse_exp.layers.interspace import fb_layers
from sparse_exp.measure.flops import backward_flops_summary, flops_summary, mask_densities
from sparse_exp.measure.probes import InterspaceProbe, basis_similarities
from sparse_exp.measure.storage import basis_counts

log = logging.getLogger("sparse_exp")


def flops_metrics(session) -> dict:
    try:
        densities = mask_densities(session.mask, session.enforcer.mode)
        shape = tuple(session.data.input_shape)
        flops = flops_summary(session.model, shape, densities)
        # backward pass (IP appendix D.2): only the trained entries need a gradient
        flops["backward"] = backward_flops_summary(session.model, shape, densities, session.mask.layer_densities())
        return {"flops": flops}
    except Exception as exc:  # never lose a finished training to a measurement
        log.warning(f"FLOP count failed: {type(exc).__name__}: {exc}")
        return {"flops": {"error": f"{type(exc).__name__}: {exc}"}}


@torch.no_grad()
def spatial_density(model) -> float:
    nonzero, total = 0, 0
    for _, layer in fb_layers(model):
        w = layer.spatial_weight()
        nonzero += int(torch.count_nonzero(w))
        total += w.numel()
    return nonzero / total if total else 1.0


def interspace_metrics(session) -> dict:
    model = session.model
    counts = basis_counts(model)
    return {"interspace": {
        "sharing": getattr(model, "fb_sharing", "none"),
        "basis_init": model.fb_bases.init_scheme,
        "basis_weight_decay": model.fb_bases.weight_decay,
        "fb_layers": sum(1 for _ in fb_layers(model)),
        "basis_params": sum(counts.values()),
        "bases": counts,
        "cos_sim": basis_similarities(model),
        "spatial_density": spatial_density(model),
    }}


def kernel_metrics(session) -> dict:
    """Which layers trained on sparse kernels, with the timings auto decided on (sparse_exp/kernels)."""
    return {"sparse_kernels": session.kernels.summary()}


def attach_measurements(session) -> None:
    extra = getattr(session, "extra_metrics", None)
    if extra is None:
        extra = session.extra_metrics = []
    extra.append(flops_metrics)
    extra.append(kernel_metrics)
    if hasattr(session.model, "fb_bases"):
        session.probes.append(InterspaceProbe(session.model))
        extra.append(interspace_metrics)
