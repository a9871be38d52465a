"""Fine-tuning a pruned pre-trained network (Renda et al.; IP appendix G.6, thesis 5.5.1).

    pretrain   dense training with the run's trainer (skipped with `pretrained=<checkpoint or run dir>`)
    prune      one-shot global magnitude pruning to floor((1 - q) D) weights (appendix F.3)
    finetune   the sparse network trains with the dense schedule restarted: fresh optimizer state and
               iteration 0 of the LR schedule, i.e. its high initial rate (warm-up included), as
               appendix G.6 prescribes instead of a small fine-tuning rate

In the interspace the pre-trained filter bases are the starting point (the whole model state is
loaded or kept). q = 0 prunes nothing: the dense pre-training is the result (Table 5.1, p = 0).

`pretrained` accepts what `model.pretrained` accepts (models/pretrained.py: a run directory, a
checkpoint or a state dict, read weights-only and checked name by name, shape by shape and by
architecture tag). `model.pretrained` works for ft too: the weights are loaded when the model is
built, and the pre-training phase is skipped as with `method.pretrained`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method
from sparse_exp.models.pretrained import checkpoint_file, load_pretrained
from sparse_exp.sparsity.select import global_mask, kept_count


@dataclass
class FTConfig(MethodConfig):
    name: str = "ft"
    compression: float = 0.9
    pretrained: Optional[str] = None  # run dir or checkpoint file; null: dense pre-training in this run
    pretrain_epochs: Optional[int] = None  # null: trainer.epochs
    finetune_epochs: Optional[int] = None  # null: trainer.epochs (the dense schedule once more, G.6)


@register_method("ft", FTConfig)
class FineTuning(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.info: dict = {}

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        if cfg.pretrained is not None and run_cfg.model.pretrained:
            raise ConfigError("method.pretrained and model.pretrained both name weights to start from; give only one")
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
        if cfg.pretrained is None and session.cfg.model.pretrained:
            # model.pretrained: the weights were loaded with the model (experiment.py)
            self.info = self.info or {"pretrained": f"model.pretrained={session.cfg.model.pretrained}"}
        elif cfg.pretrained is None:
            result = session.train("pretrain", epochs=cfg.pretrain_epochs)
            self.info = {"pretrained": "pretrain phase", "pretrain_test_acc": result.test_acc}
            if result.status != "completed" or cfg.compression == 0.0:
                return
        elif not tuning:
            self.info = load_pretrained(cfg.pretrained, session.model, session.cfg.model, key="method.pretrained")
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


__all__ = ["FTConfig", "FineTuning", "checkpoint_file", "load_pretrained"]
