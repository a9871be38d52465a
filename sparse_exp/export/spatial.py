"""Convert a trained interspace model back to an ordinary spatial nn.Module (deployment without the
basis-first overhead); `python -m sparse_exp.export <run>` writes the same weights as a state dict
(export/state_dict.py, `spatial_state_dict`).

Every filter-basis convolution becomes the nn.Conv2d it stands for, with the composed filters
W = sum_n beta_n F(n) (eq. 5.5) as its weight; the bases are dropped. The result has the state-dict
keys of the SP architecture (`MODELS.get(name).build(...)`), computes the same function, and runs
at the dense spatial cost: IP's composed filters are spatially dense even when beta is sparse
(Fig. 5.2), so this is the way to deploy dense (or mildly pruned) IP models, while strongly pruned
ones are cheaper with the basis-first evaluation of Algorithm 5.2 (scripts/sparse_speedup.py).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from sparse_exp.export.state_dict import spatial_state_dict
from sparse_exp.layers.interspace import fb_layers


@torch.no_grad()
def to_spatial(model: nn.Module) -> nn.Module:
    """A spatial copy of `model` (the input is left as it is); a spatial model is copied unchanged."""
    state = spatial_state_dict(model)
    model = copy.deepcopy(model)
    for name, layer in list(fb_layers(model)):
        conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                         bias=layer.bias is not None, device=layer.coeff.device, dtype=layer.coeff.dtype)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, conv)
    for attr in ("fb_bases", "fb_sharing"):
        if hasattr(model, attr):
            delattr(model, attr)
    model.load_state_dict(state)
    return model
