"""Fine-tuning a pruned pre-trained network (Renda et al.; IP appendix G.6, thesis 5.5.1).

    pretrain   dense training with the run's trainer (skipped with `pretrained=<checkpoint or run dir>`)
    prune      one-shot global magnitude pruning to floor((1 - q) D) weights (appendix F.3)
    finetune   the sparse network trains with the dense schedule restarted: fresh optimizer state and
               iteration 0 of the LR schedule, i.e. its high initial rate (warm-up included), as
               appendix G.6 prescribes instead of a small fine-tuning rate

In the interspace the pre-trained filter bases are the starting point (the whole model state is
loaded or kept). q = 0 prunes nothing: the dense pre-training is the result (Table 5.1, p = 0).

`pretrained` accepts a run directory of this tool (its checkpoint.pt) or a .pt file holding a model
state dict or a checkpoint; files are read with torch.load(weights_only=True), never unpickling
code, and must match the configured architecture key by key and shape by shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.select import global_mask, kept_count
from sparse_exp.tracking.files import load_torch


@dataclass
class FTConfig(MethodConfig):
    name: str = "ft"
    compression: float = 0.9
    pretrained: Optional[str] = None  # run dir or checkpoint file; null: dense pre-training in this run
    pretrain_epochs: Optional[int] = None  # null: trainer.epochs
    finetune_epochs: Optional[int] = None  # null: trainer.epochs (the dense schedule once more, G.6)


def checkpoint_file(source: str) -> Path:
    path = Path(source).expanduser()
    return path / "checkpoint.pt" if path.is_dir() else path


def load_pretrained(source: str, model: torch.nn.Module) -> dict:
    """Load a pre-trained model state into `model` after checking it fits; returns what was loaded."""
    file = checkpoint_file(source)
    try:
        obj = load_torch(file)
    except Exception as exc:  # unreadable or not a weights-only file
        raise ConfigError(f"method.pretrained: cannot read {file} as a weights-only torch file ({type(exc).__name__}: {exc})") from None
    is_checkpoint = isinstance(obj, dict) and isinstance(obj.get("model"), dict)
    state = obj["model"] if is_checkpoint else obj
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"method.pretrained: {file} holds neither a sparse-exp checkpoint nor a model state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra), ("shape mismatch", shapes)) if items]
        raise ConfigError(f"method.pretrained: {file} does not fit the configured model (same model= and sharing= needed): "
                          + "; ".join(parts))
    model.load_state_dict(state)
    info = {"pretrained": str(file.absolute())}
    if is_checkpoint:
        info["pretrained_mask_mode"] = obj.get("mask_mode")
        info["pretrained_phases"] = list(obj.get("phases", {}))
    return info


@register_method("ft", FTConfig)
class FineTuning(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.info: dict = {}

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        if cfg.pretrained is not None:
            if not checkpoint_file(cfg.pretrained).is_file():
                raise ConfigError(f"method.pretrained: '{cfg.pretrained}' is neither a checkpoint file nor a run directory with checkpoint.pt")
            if cfg.compression == 0.0:
                raise ConfigError("method.compression=0 with method.pretrained prunes and trains nothing; give q > 0")
        for key in ("pretrain_epochs", "finetune_epochs"):
            value = getattr(cfg, key)
            if value is not None and value < 1:
                raise ConfigError(f"method.{key} must be >= 1 or null (trainer.epochs); got {value}")

    def run(self, session) -> None:
        cfg = self.cfg
        tuning = "finetune" in session.phases or session.resuming_phase("finetune")
        if cfg.pretrained is None:
            result = session.train("pretrain", epochs=cfg.pretrain_epochs)
            self.info = {"pretrained": "pretrain phase", "pretrain_test_acc": result.test_acc}
            if result.status != "completed" or cfg.compression == 0.0:
                return
        elif not tuning:
            self.info = load_pretrained(cfg.pretrained, session.model)
            session.log(f"ft: loaded the pre-trained model from {self.info['pretrained']}")
            if self.info.get("pretrained_mask_mode") not in (None, "dense"):
                session.log(f"WARNING: the pre-trained run trained with a {self.info['pretrained_mask_mode']} mask, not densely")
        if not tuning:
            total = sum(p.numel() for p in session.params.values())
            with session.timed_mask():
                mask = global_mask({n: p.detach().abs() for n, p in session.params.items()}, kept_count(cfg.compression, total))
            session.log(f"ft: one-shot global magnitude pruning to {mask.kept():,} of {total:,} weights; "
                        "fine-tuning restarts the dense schedule")
            session.set_mask(mask, mode="prune")
        self.info["kept"] = session.mask.kept()
        session.train("finetune", epochs=cfg.finetune_epochs)

    def state_dict(self) -> dict:
        return {"info": dict(self.info)}

    def load_state_dict(self, state: dict) -> None:
        self.info = dict(state.get("info", {}))

    def summary(self) -> dict:
        return {"ft": dict(self.info)}


__all__ = ["FTConfig", "FineTuning", "load_pretrained"]
