"""A run's model from its config: the architecture (a registered one, or the user's for
model=custom), the interspace conversion and the seeded initialisation.

The experiment, the loader of compressed files (export/compressed.py) and the Python API
(sparse_exp/api.py) all build models here, so a model rebuilt from a file is the trained one's twin.
Pre-trained weights (`model.pretrained`) are loaded afterwards by models/pretrained.py.
"""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp.models import MODELS
from sparse_exp.models.init import initialise
from sparse_exp.seeding import derive_seed


def init_seed_of(cfg) -> int:
    """The 32-bit seed the weights are drawn from (all FreezeNet needs to store for frozen weights)."""
    return derive_seed(cfg.seed, "init") & 0xFFFFFFFF


def build_model(cfg, num_classes: int, input_shape: tuple[int, int, int], init_seed: int) -> nn.Module:
    """The configured architecture, initialised from `init_seed` alone (on CPU, device-independent).

    `cfg` needs `model`, `sharing` and `init`. The constructor runs under `torch.manual_seed(init_seed)`
    (in a forked RNG, nothing outside changes) so that a user's model whose own layers draw random
    numbers is reproducible too; every conv, linear and BatchNorm parameter is then drawn by `initialise`."""
    spec = MODELS.get(cfg.model.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        model = spec.create(cfg.model, num_classes, tuple(input_shape))
    if cfg.sharing.name != "none":
        from sparse_exp.layers.interspace import to_interspace

        to_interspace(model, cfg.sharing, cfg.init)
    # A user's model may hold modules initialise() has no rule for (LayerNorm, embeddings, ...):
    # they keep the values drawn above. The tables' models are covered completely (strict).
    initialise(model, cfg.init.weights, init_seed, strict=spec.from_config is None)
    return model


def architecture_tag(model_cfg) -> str:
    """What a weights file written by this tool says it holds (models/pretrained.py checks it)."""
    name = model_cfg.name
    target = getattr(model_cfg, "target", None)
    return f"sparse-exp:{name}" + (f":{target}" if target else "")
