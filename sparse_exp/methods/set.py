"""SET (Mocanu et al.) and the dynamic-sparse-training driver it shares with RigL (IP appendix G.3,
thesis 2.3.1 and 5.5.1).

Before training: a random mask with Erdős-Rényi-kernel layer densities (eq. A.76, eps solved so
exactly floor((1 - q) D) weights are kept), pruned mode. Every t_p steps (`update_every`: 1,500 for
SET, 4,000 for RigL) each layer drops the fraction p_t of its non-zero weights with the smallest
magnitude, p_t following the cosine schedule of eq. A.77 over the T steps of the training (or of its
first `stop_fraction`, after which the mask stays fixed, as RigL's own code does at 0.75), and
regrows as many: SET at random, RigL where the dense gradient is largest (rigl.py). Regrown weights
start at 0 with zero momentum (session.update_mask); layer counts never change.

The hooks cost nothing between updates: one integer test per step, no tensor work, no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.dst import GrowScore, drop_and_grow, erk_random_mask, uniform_scores
from sparse_exp.sparsity.schedules import drop_fraction


@dataclass
class DSTConfig(MethodConfig):
    name: str = "set"
    compression: float = 0.9
    update_every: int = 1500  # t_p: steps between mask updates (appendix G.3: 1,500 SET, 4,000 RigL)
    drop_init: float = 0.5  # p_init of the cosine drop schedule (eq. A.77)
    drop_min: float = 0.005  # p_min of eq. A.77
    # Updates (and eq. A.77's T) end at this fraction of the training: 1 as in the thesis' setup
    # ("until the end"); RigL's own code stops at 0.75 (its end_step), so does rigl with 0.75.
    stop_fraction: float = 1.0


class DynamicSparse(Method):
    """ERK random start, then magnitude drop and `grow_score` regrowth every `update_every` steps."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.every = int(cfg.update_every)  # a plain int: the per-step test must not touch the config object
        self.record = {"updates": 0, "last_step": None, "last_drop_fraction": None, "last_exchanged": 0,
                       "exchanged": 0, "erk_eps": None}

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        if cfg.compression >= 1.0:
            raise ConfigError(f"method.compression must be < 1 for method={cls.name} (it trains a sparse network); got {cfg.compression}")
        if cfg.update_every < 1:
            raise ConfigError(f"method.update_every must be >= 1 (steps between mask updates); got {cfg.update_every}")
        if not 0.0 < cfg.stop_fraction <= 1.0:
            raise ConfigError(f"method.stop_fraction must lie in (0, 1] (the fraction of training with mask updates); got {cfg.stop_fraction}")
        if not 0.0 <= cfg.drop_min <= cfg.drop_init <= 1.0:
            raise ConfigError(f"method.drop_init and method.drop_min need 0 <= drop_min <= drop_init <= 1; got {cfg.drop_init}, {cfg.drop_min}")

    # driver --------------------------------------------------------------------------------
    def prepare(self, session) -> None:
        # The same start mask for SET and RigL at a given seed (stream independent of the method name).
        with session.timed_mask():
            mask, info = erk_random_mask(session.params, self.cfg.compression, session.cfg.seed, "method", "dst_mask")
        self.record["erk_eps"] = info["eps"]
        session.log(f"{self.name}: random ERK mask (eq. A.76, eps = {info['eps']:.4g}); "
                    f"updates every {self.cfg.update_every} steps, drop fraction {self.cfg.drop_init} -> {self.cfg.drop_min} (eq. A.77)")
        session.set_mask(mask, mode="prune")

    # hooks ---------------------------------------------------------------------------------
    def end_step(self, trainer) -> int:
        """T of eq. A.77: the step after which no update happens (method.stop_fraction of the training)."""
        return max(1, int(self.cfg.stop_fraction * trainer.total_steps))

    def after_step(self, trainer, step: int) -> None:
        if step % self.every or step >= self.end_step(trainer):
            return
        self.update(trainer, step)

    def grow_score(self, trainer, step: int) -> GrowScore:
        """name, parameter -> non-negative scores; the largest inactive ones are regrown."""
        raise NotImplementedError

    def update(self, trainer, step: int) -> None:
        session = trainer.session
        fraction = drop_fraction(step, self.end_step(trainer), self.cfg.drop_init, self.cfg.drop_min)
        score = self.grow_score(trainer, step)
        with session.timed_mask():
            mask, exchanged = drop_and_grow(session.params, session.mask, fraction, score)
            session.update_mask(mask, trainer)
        r = self.record
        r.update(updates=r["updates"] + 1, last_step=step, last_drop_fraction=fraction, last_exchanged=exchanged,
                 exchanged=r["exchanged"] + exchanged)
        session.scalars({"dst/drop_fraction": fraction, "dst/exchanged": exchanged}, step)
        session.log(f"  {self.name} update {r['updates']} at step {step}: drop fraction {fraction:.4f}, "
                    f"{exchanged:,} weights exchanged")

    # state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"record": dict(self.record)}

    def load_state_dict(self, state: dict) -> None:
        self.record.update(state.get("record", {}))

    def summary(self) -> dict:
        return {"dst": {"method": self.name, "update_every": self.cfg.update_every, "drop_init": self.cfg.drop_init,
                        "drop_min": self.cfg.drop_min, "stop_fraction": self.cfg.stop_fraction, **self.record}}


@register_method("set", DSTConfig)
class SET(DynamicSparse):
    """Sparse Evolutionary Training: regrow uniformly at random among the inactive positions,
    from a stream of the run seed and the update step (exact on resume, nothing to store)."""

    def grow_score(self, trainer, step: int) -> GrowScore:
        seed = trainer.session.cfg.seed
        return lambda name, p: uniform_scores(p.shape, p.device, seed, "method", "set", step, name)


__all__ = ["DSTConfig", "DynamicSparse", "SET"]
