"""Start a run from pre-trained weights (`model.pretrained=<run dir or .pt file>`, every method;
`method.pretrained` of method=ft reads files the same way).

Accepted files, all read with torch.load(weights_only=True) (loading never runs pickled code):

* a run directory of this tool (its checkpoint.pt) or such a checkpoint file;
* a state dict exported by `python -m sparse_exp.export` (export/state_dict.py);
* a plain state dict, also wrapped as {"state_dict": ...} or with DDP's "module." prefix, e.g.
  torchvision's weights for `resnet18_imagenet`, whose module names are torchvision's.

The weights must fit the configured model name by name and shape by shape. Names and shapes do
not always identify a network: torchvision's ResNet-50 (v1.5, stride on the 3x3 convolution) has
exactly the names and shapes of Table A.7's ResNet-50 (v1, stride on the first 1x1). Files this
tool writes therefore carry an architecture tag (models/build.py: architecture_tag) that must
match; a file without a tag is refused for a model with such lookalikes (ModelSpec.lookalikes)
unless `model.pretrained_architecture=<model name>` states what it holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from omegaconf import OmegaConf

from sparse_exp.errors import ConfigError
from sparse_exp.models import MODELS
from sparse_exp.models.build import architecture_tag
from sparse_exp.tracking.files import load_torch


def checkpoint_file(source: str) -> Path:
    path = Path(source).expanduser()
    return path / "checkpoint.pt" if path.is_dir() else path


def _tag_of(obj, file: Path) -> Optional[str]:
    """The architecture tag the file carries, or that its run directory's config.yaml gives."""
    if isinstance(obj, dict) and isinstance(obj.get("architecture"), str):
        return obj["architecture"]
    if isinstance(obj, dict) and "mask_mode" in obj and (file.parent / "config.yaml").is_file():
        try:  # a checkpoint.pt of a run written before checkpoints carried the tag
            return architecture_tag(OmegaConf.load(file.parent / "config.yaml").model)
        except Exception:  # noqa: BLE001 - no readable config: no tag
            return None
    return None


def _state_of(obj) -> Optional[dict]:
    shapes = obj.get("shapes", {}) if isinstance(obj, dict) else {}  # of CSR weights (export/state_dict.py)
    for key in ("model", "state_dict"):  # a checkpoint's "model", an export's "state_dict"
        inner = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    if all(k.startswith("module.") for k in obj):  # saved from a DistributedDataParallel wrapper
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {k: (v.to_dense().reshape(shapes.get(k, v.shape)) if v.layout != torch.strided else v) for k, v in obj.items()}


def read_weights(source: str, key: str) -> tuple[dict, Path, dict, Optional[str]]:
    """(state dict, file, the object read, architecture tag or None); ConfigError naming `key`."""
    file = checkpoint_file(source)
    if not file.is_file():
        raise ConfigError(f"{key}: '{source}' is neither a weights file nor a run directory with checkpoint.pt")
    try:
        obj = load_torch(file)
    except Exception as exc:  # unreadable or not a weights-only file
        raise ConfigError(f"{key}: cannot read {file} as a weights-only torch file ({type(exc).__name__}: {exc})") from None
    state = _state_of(obj)
    if state is None:
        raise ConfigError(f"{key}: {file} holds neither a sparse-exp checkpoint nor a model state dict")
    return state, file, obj, _tag_of(obj, file)


def check_architecture(model_cfg, tag: Optional[str], file: Path, key: str) -> None:
    """Refuse weights of another network that merely has the same names and shapes."""
    own = architecture_tag(model_cfg)
    declared = getattr(model_cfg, "pretrained_architecture", None)
    if tag is not None and tag != own:
        raise ConfigError(f"{key}: {file} holds a '{tag}' network, not model={model_cfg.name} ('{own}'); "
                          "choose the model it was trained as")
    lookalikes = MODELS.get(model_cfg.name).lookalikes if model_cfg.name in MODELS else ()
    if tag is None and declared is not None and declared != model_cfg.name:
        raise ConfigError(f"model.pretrained_architecture={declared}: the configured model is {model_cfg.name}; "
                          "a file of another architecture cannot be loaded into it")
    if tag is None and lookalikes and declared != model_cfg.name:
        raise ConfigError(
            f"{key}: {file} carries no architecture tag, and model={model_cfg.name} has lookalikes with the same "
            f"names and shapes but another function ({'; '.join(lookalikes)}); if the file really holds this "
            f"model, say so with model.pretrained_architecture={model_cfg.name}")


def load_pretrained(source: str, model: torch.nn.Module, model_cfg=None, key: str = "model.pretrained") -> dict:
    """Load weights from `source` into `model` after checking they fit; returns what was loaded.
    `model_cfg` (the run's model config) enables the architecture check."""
    state, file, obj, tag = read_weights(source, key)
    if model_cfg is not None:
        check_architecture(model_cfg, tag, file, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra), ("shape mismatch", shapes)) if items]
        raise ConfigError(f"{key}: {file} does not fit the configured model (same model= and sharing= needed): "
                          + "; ".join(parts))
    model.load_state_dict(state)
    info = {"pretrained": str(file.absolute()), "pretrained_architecture": tag}
    if isinstance(obj, dict) and "mask_mode" in obj:  # a checkpoint of this tool
        info["pretrained_mask_mode"] = obj.get("mask_mode")
        info["pretrained_phases"] = list(obj.get("phases", {}))
    return info
