"""FreezeNet (Algorithm 3.1): score like SNIP, train the top floor((1 - q) D) weights and freeze the
rest at their random initial values (recoverable from the 32-bit init seed). Biases and BatchNorm
always train; q = 1 trains only them.

Variants: FreezeNet-WD (`frozen_weight_decay=true`, section 3.4.1.2) lets weight decay shrink the
frozen weights; FreezeNet-reinit (`reinit=true`, Fig. 3.6) draws new weights after the mask is
computed; a random freezing mask is `criterion=random` (Fig. 3.4b); any other score works too.
"""
from __future__ import annotations

from dataclasses import dataclass

from sparse_exp.methods.base import Method, register_method
from sparse_exp.models.init import initialise
from sparse_exp.seeding import derive_seed
from sparse_exp.sparsity.prune import mask_for, validate_scoring
from sparse_exp.sparsity.scores.config import ScoringConfig


@dataclass
class FreezeNetConfig(ScoringConfig):
    name: str = "freezenet"
    compression: float = 0.99
    criterion: str = "snip"
    frozen_weight_decay: bool = False
    reinit: bool = False


@register_method("freezenet", FreezeNetConfig)
class FreezeNet(Method):
    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        validate_scoring(cfg, "method.criterion", cfg.criterion)

    def prepare(self, session) -> None:
        with session.timed_mask():
            mask, self.info = mask_for(session, self.cfg.criterion, self.cfg, self.cfg.compression)
        if self.cfg.reinit:
            # New weights after freezing: the mask keeps its layerwise rates, the values change.
            session.init_seed = derive_seed(session.cfg.seed, "reinit") & 0xFFFFFFFF
            initialise(session.model, session.cfg.init.weights, session.init_seed)
            session.log(f"freezenet: re-initialised the weights from seed {session.init_seed} after computing the mask")
        session.set_mask(mask, mode="freeze", decay_frozen=self.cfg.frozen_weight_decay)

    def summary(self) -> dict:
        return {"freezing": {**getattr(self, "info", {}), "frozen_weight_decay": self.cfg.frozen_weight_decay,
                             "reinit": self.cfg.reinit}}


@dataclass
class FreezeNetWDConfig(FreezeNetConfig):
    name: str = "freezenet_wd"
    frozen_weight_decay: bool = True


@register_method("freezenet_wd", FreezeNetWDConfig)
class FreezeNetWD(FreezeNet):
    """FreezeNet-WD as its own name, so sweeps can list snip,freezenet,freezenet_wd (Table 3.4)."""
