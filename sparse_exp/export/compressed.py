"""The compressed model file: trained values + bit-packed mask + the 32-bit initialisation seed.

A pruned network needs its kept values and where they sit (the mask); a FreezeNet needs the same
plus the seed its frozen weights were drawn from (thesis 2.2.2.3, 3.3.3.1). Everything that is not
a prunable weight (biases, BatchNorm parameters and statistics, filter bases) is stored as is.
`load_compressed` rebuilds the model from the file alone — architecture from the header, frozen
weights by re-running the seeded initialisation — bit-identical to the trained model. The file is
an .npz read with allow_pickle=False: loading never executes pickled code. Frozen weights that do
not follow from the seed are stored in full: FreezeNet-WD's (they move under weight decay) and
those of a model started from `model.pretrained` or handed in through the Python API. The header
also records the input normalisation and the architecture tag (export/state_dict.py uses both).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.build import architecture_tag, build_model

FORMAT = "sparse-exp-compressed-v1"


def export_compressed(path: Path, model: torch.nn.Module, state: Mapping[str, torch.Tensor],
                      masks: Mapping[str, torch.Tensor], mode: str, decay_frozen: bool, cfg,
                      num_classes: int, input_shape, init_seed: int, weights_from_seed: bool = True,
                      normalization: Optional[dict] = None) -> int:
    """Write the compressed file for `state` (a model state_dict) under `masks`; returns its size.
    `weights_from_seed`: whether the frozen weights are the seeded initialisation's."""
    prunable = list(prunable_parameters(model))
    store_frozen = mode == "freeze" and (decay_frozen or not weights_from_seed)
    header = {
        "format": FORMAT,
        "mode": mode,
        "decay_frozen": bool(decay_frozen),
        "init_seed": int(init_seed),
        "num_classes": int(num_classes),
        "input_shape": [int(s) for s in input_shape],
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "sharing": OmegaConf.to_container(cfg.sharing, resolve=True),
        "init": OmegaConf.to_container(cfg.init, resolve=True),
        "architecture": architecture_tag(cfg.model),
        "normalization": normalization,
        "prunable": prunable,
        "other": [k for k in state if k not in prunable],
        "shapes": {k: list(v.shape) for k, v in state.items()},
        "dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in state.items()},
    }
    arrays = {}
    for i, name in enumerate(prunable):
        value = state[name].detach().cpu()
        keep = masks[name].detach().cpu().bool() if mode != "dense" else torch.ones_like(value, dtype=torch.bool)
        arrays[f"mask{i}"] = np.packbits(keep.numpy().reshape(-1))
        arrays[f"kept{i}"] = value[keep].numpy()
        if store_frozen:
            arrays[f"frozen{i}"] = value[~keep].numpy()
    for i, name in enumerate(header["other"]):
        arrays[f"other{i}"] = state[name].detach().cpu().numpy()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    tmp.replace(path)
    return path.stat().st_size


def read_header(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["header"].tobytes().decode())


def load_compressed(path: Path, device: Optional[str] = "cpu", model: Optional[torch.nn.Module] = None) -> torch.nn.Module:
    """Rebuild the trained model from a compressed file (and nothing else). `model`: an instance of
    the architecture to load into (for a network handed to the Python API, which the file cannot build)."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes().decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        cfg = OmegaConf.create({"model": header["model"], "sharing": header["sharing"], "init": header["init"]})
        if model is None:
            model = build_model(cfg, header["num_classes"], tuple(header["input_shape"]), header["init_seed"])
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        mode = header["mode"]
        for i, name in enumerate(header["prunable"]):
            shape = header["shapes"][name]
            n = int(np.prod(shape)) if shape else 1
            keep = torch.from_numpy(np.unpackbits(z[f"mask{i}"])[:n].astype(bool).reshape(shape))
            value = state[name] if mode == "freeze" else torch.zeros(shape, dtype=state[name].dtype)
            value[keep] = torch.from_numpy(z[f"kept{i}"])
            if f"frozen{i}" in z.files:
                value[~keep] = torch.from_numpy(z[f"frozen{i}"])
            state[name] = value
        for i, name in enumerate(header["other"]):
            state[name] = torch.from_numpy(z[f"other{i}"].copy())
    model.load_state_dict(state)
    return model.to(device)
