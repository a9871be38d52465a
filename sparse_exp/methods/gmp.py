"""Gradual magnitude pruning (Zhu & Gupta, Gale et al.; IP appendix G.5, thesis eq. 5.16).

Training starts dense (all-ones mask, pruned mode). From iteration t0 on, every N iterations and
at t1, the compression rate becomes q(t) = q (1 - (1 - (t - t0) / (t1 - t0))^3) (eq. A.82) and the
floor((1 - q(t)) D) surviving weights of largest magnitude are kept, globally over all prunable
weights; pruned weights are zero from then on and never regrow. After t1 the mask is fixed.

Iteration counts. Appendix G.5 takes Gale et al.'s values for batch size 1,024 (N = 2,000,
t0 = 40,000, t1 = 100,000 for q = 0.8 and 76,000 for q = 0.9) and multiplies them by 4 for batch
size 256. Here `begin_step`, `end_step` and `update_every` are given at `reference_batch_size`
(1,024) and scaled by reference_batch_size / trainer.batch_size; `reference_batch_size: null`
makes them plain iterations of this run (short test runs). `end_step: null` picks the appendix's
t1 for the run's q: 100,000 for q <= 0.8, 76,000 above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.schedules import gmp_compression, gmp_is_update
from sparse_exp.sparsity.select import global_mask, kept_count


@dataclass
class GMPConfig(MethodConfig):
    name: str = "gmp"
    compression: float = 0.9  # final q
    begin_step: int = 40_000  # t0 (at reference_batch_size)
    end_step: Optional[int] = None  # t1; null: 100,000 for q <= 0.8, 76,000 above (appendix G.5)
    update_every: int = 2_000  # N
    reference_batch_size: Optional[int] = 1024  # the batch size the three counts are given for; null: iterations


def gale_end_step(q: float) -> int:
    """t1 of Gale et al. at batch size 1,024 for the two rates appendix G.5 uses."""
    return 100_000 if q <= 0.8 else 76_000


@register_method("gmp", GMPConfig)
class GradualMagnitudePruning(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.session = None
        self.steps: tuple[int, int, int] = (0, 0, 1)  # t0, t1, N in iterations of this run
        self.record = {"updates": 0, "last_step": None, "last_compression": 0.0}

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        end = cfg.end_step if cfg.end_step is not None else gale_end_step(cfg.compression)
        if cfg.begin_step < 0 or end <= cfg.begin_step:
            raise ConfigError(f"method.begin_step and method.end_step need 0 <= begin_step < end_step; got {cfg.begin_step}, {end}")
        if cfg.update_every < 1:
            raise ConfigError(f"method.update_every must be >= 1 (N, iterations between pruning steps); got {cfg.update_every}")
        if cfg.reference_batch_size is not None and cfg.reference_batch_size < 1:
            raise ConfigError(f"method.reference_batch_size must be >= 1 or null; got {cfg.reference_batch_size}")

    def iterations(self, batch_size: int) -> tuple[int, int, int]:
        """(t0, t1, N) in iterations of a run with this batch size."""
        cfg = self.cfg
        end = cfg.end_step if cfg.end_step is not None else gale_end_step(cfg.compression)
        scale = cfg.reference_batch_size / batch_size if cfg.reference_batch_size else 1.0
        t0, t1 = round(cfg.begin_step * scale), round(end * scale)
        return t0, max(t1, t0 + 1), max(1, round(cfg.update_every * scale))

    # driver --------------------------------------------------------------------------------
    def run(self, session) -> None:
        self.session = session
        self.steps = self.iterations(session.cfg.trainer.batch_size)
        super().run(session)

    def prepare(self, session) -> None:
        t0, t1, n = self.steps
        session.log(f"gmp: dense start; q(t) cubic from iteration {t0} to {t1}, pruning every {n} iterations "
                    f"(eq. A.82) to q = {self.cfg.compression}")
        session.set_mask(Mask.ones(session.params), mode="prune")

    # hooks ---------------------------------------------------------------------------------
    def after_step(self, trainer, step: int) -> None:
        t0, t1, every = self.steps
        if step == 1 and t1 > trainer.total_steps and self.cfg.compression > 0:
            raise ConfigError(f"gmp: the pruning ends at iteration t1 = {t1} (method.end_step) but the training has only "
                              f"{trainer.total_steps}; lower method.end_step or set method.reference_batch_size=null")
        if gmp_is_update(step, t0, t1, every):
            self.update(trainer, step)

    @torch.no_grad()
    def update(self, trainer, step: int) -> None:
        session = trainer.session
        q_t = gmp_compression(step, self.cfg.compression, *self.steps[:2])
        total = session.mask.numel()
        kept = kept_count(q_t, total)
        if kept >= session.mask.kept():
            return
        with session.timed_mask():
            current = session.mask.masks
            # Pruned weights score -1: they can never come back (appendix G.5).
            scores = {n: torch.where(current[n], p.detach().abs(), -1.0) for n, p in session.params.items()}
            session.update_mask(global_mask(scores, kept), trainer)
        self.record.update(updates=self.record["updates"] + 1, last_step=step, last_compression=q_t)
        session.scalars({"gmp/compression": q_t}, step)
        session.log(f"  gmp step {step}: compression {q_t:.4f}, {kept:,} of {total:,} weights kept")

    # state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"record": dict(self.record)}

    def load_state_dict(self, state: dict) -> None:
        self.record.update(state.get("record", {}))

    def summary(self) -> dict:
        t0, t1, every = self.steps
        density = self.session.mask.density() if self.session else None
        return {"gmp": {"begin_step": t0, "end_step": t1, "update_every": every,
                        "reference_batch_size": self.cfg.reference_batch_size, "final_density": density, **self.record}}


__all__ = ["GMPConfig", "GradualMagnitudePruning", "gale_end_step"]
