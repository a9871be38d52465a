"""A trained model as a standard PyTorch state dict, loadable without sparse-exp.

    python -m sparse_exp.export <run dir>            # -> <run dir>/state_dict.pt
    python -m sparse_exp.export <run dir> --csr      # -> <run dir>/state_dict_csr.pt

The file is one dict, read with `torch.load(path, weights_only=True)`:

    state_dict     parameter and buffer name -> tensor, the names of the model's standard form
    layout         "dense", or "csr": every conv/linear weight with zeros in it is a
                   torch.sparse_csr tensor of the weight reshaped to (out, in * K * K); `shapes`
                   holds the original shapes, so `w.to_dense().reshape(shapes[name])` restores it
    shapes         name -> shape of every tensor
    normalization  {"mean", "std", "preprocess"}: what the inputs were during training
    architecture   the tag models/pretrained.py checks (`model.pretrained=<this file>` loads it)
    model, num_classes, input_shape, format

An interspace model (sharing != none) is written in its spatial form: each filter-basis layer's
`coeff` and the shared bases become the composed filters W = sum_n beta_n F(n) (eq. 5.5) under the
name `<layer>.weight`, so the file loads into the same architecture without sharing (for
`resnet18_imagenet`, into torchvision's resnet18). Pruned weights are exact zeros in either layout.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from sparse_exp.models.base import prunable_parameters

FORMAT = "sparse-exp-state-dict-v1"


@torch.no_grad()
def spatial_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with filter-basis layers replaced by their composed spatial weights."""
    from sparse_exp.layers.interspace import fb_layers

    composed = {f"{name}.coeff": (f"{name}.weight", layer.spatial_weight()) for name, layer in fb_layers(model)}
    state = {}
    for key, value in model.state_dict().items():  # in the model's order, bases left out
        if key.startswith("fb_bases."):
            continue
        key, value = composed.get(key, (key, value))
        state[key] = value.detach().cpu().clone()
    return state


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """A weight as a sparse CSR matrix of shape (out, everything else)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the layout itself is stable
        warnings.simplefilter("ignore", UserWarning)
        return weight.reshape(weight.shape[0], -1).to_sparse_csr()


def plain_state_dict(model: nn.Module, csr: bool = False) -> tuple[dict, dict]:
    """(state dict in the standard form, shapes); with `csr` the conv/linear weights that hold
    zeros are sparse CSR tensors."""
    state = spatial_state_dict(model)
    shapes = {k: list(v.shape) for k, v in state.items()}
    if csr:
        weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        weights |= {k.rsplit(".", 1)[0] + ".weight" for k in prunable_parameters(model)}  # composed interspace filters
        for name in sorted(weights & set(state)):
            if state[name].dim() >= 2 and bool((state[name] == 0).any()):
                state[name] = to_csr(state[name])
    return state, shapes


def export_state_dict(model: nn.Module, path: Path, *, csr: bool = False, normalization: Optional[dict] = None,
                      model_cfg: Optional[Mapping] = None, architecture: Optional[str] = None,
                      num_classes: Optional[int] = None, input_shape=None) -> Path:
    """Write `model` as a plain state dict file (see the module docstring); returns the path."""
    state, shapes = plain_state_dict(model, csr)
    obj = {
        "format": FORMAT,
        "layout": "csr" if csr else "dense",
        "state_dict": state,
        "shapes": shapes,
        "normalization": normalization,
        "architecture": architecture,
        "model": dict(model_cfg) if model_cfg is not None else None,
        "num_classes": num_classes,
        "input_shape": list(input_shape) if input_shape is not None else None,
    }
    path = Path(path)
    torch.save(obj, path)
    return path


def dense_state(obj: dict) -> dict[str, torch.Tensor]:
    """The dense tensors of a file written here (what `model.load_state_dict` takes); five lines of
    plain torch, repeated in the README for use without this package."""
    shapes = obj.get("shapes", {})
    return {k: (v.to_dense().reshape(shapes[k]) if v.layout != torch.strided else v)
            for k, v in obj["state_dict"].items()}


def export_run_state_dict(run_dir: Path, csr: bool = False, out: Optional[Path] = None) -> Path:
    """Export the early-stopping model of a finished run (its compressed.npz) as a state dict."""
    from sparse_exp.export.compressed import load_compressed, read_header

    run_dir = Path(run_dir)
    file = run_dir / "compressed.npz"
    if not file.is_file():
        raise FileNotFoundError(f"{run_dir} has no compressed.npz (is it a finished sparse-exp run?)")
    header = read_header(file)
    model = load_compressed(file)
    out = Path(out) if out else run_dir / ("state_dict_csr.pt" if csr else "state_dict.pt")
    return export_state_dict(
        model, out, csr=csr, normalization=header.get("normalization"), model_cfg=header.get("model"),
        architecture=header.get("architecture"), num_classes=header["num_classes"], input_shape=header["input_shape"],
    )
