"""Pruning at initialisation (section 2.3.1, appendix G.4): score once, keep the top
floor((1 - q) D) weights, train the sparse network. One small class per criterion; `ip` is the
same in the interspace, where the scores live on the basis coefficients (section 5.5.1)."""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import ClassVar

from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.prune import mask_for, validate_scoring
from sparse_exp.sparsity.scores.config import ScoringConfig


@dataclass
class PaIConfig(ScoringConfig):
    name: str = "snip"
    compression: float = 0.9


class PruneAtInit(Method):
    criterion: ClassVar[str] = "snip"

    def criterion_of(self) -> str:
        return self.criterion

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        validate_scoring(cfg, "method.criterion", getattr(cfg, "criterion", cls.criterion))

    def prepare(self, session) -> None:
        with session.timed_mask():
            mask, self.info = mask_for(session, self.criterion_of(), self.cfg, self.cfg.compression)
        session.set_mask(mask, mode="prune")

    def summary(self) -> dict:
        return {"pruning": getattr(self, "info", {})}


def _register(name: str) -> None:
    """One registry entry per criterion: its config differs from PaIConfig only in the name."""
    title = name.capitalize()
    config = make_dataclass(f"{title}Config", [("name", str, field(default=name))], bases=(PaIConfig,))
    register_method(name, config)(type(f"{title}PaI", (PruneAtInit,), {"criterion": name}))


for _name in ("random", "magnitude", "snip", "usnip", "grasp", "synflow"):
    _register(_name)


@dataclass
class IPConfig(PaIConfig):
    name: str = "ip"
    criterion: str = "snip"  # snip | grasp | synflow | random | magnitude (| usnip)


@register_method("ip", IPConfig)
class InterspacePruning(PruneAtInit):
    """Interspace pruning at initialisation: needs sharing != none (the basis coefficients are the
    prunable parameters there)."""

    interspace = "required"

    def criterion_of(self) -> str:
        return self.cfg.criterion
