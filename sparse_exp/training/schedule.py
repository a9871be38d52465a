"""Learning-rate schedules of Tables A.9-A.11, and cosine annealing, as one function of the iteration.

step (`trainer.lr_schedule=step`, the papers'): lr(t) = lr0 * warmup(t) * gamma^(number of decays
before t), where decays happen every N iterations ("every 30k iterations") or at epoch milestones
("epochs 30/60/80"), and the linear warm-up ramps over the first W = warmup_epochs *
steps_per_epoch iterations (Goyal et al.).

cosine (`trainer.lr_schedule=cosine`): the same linear warm-up, then
lr(t) = lr_min + (lr0 - lr_min) * (1 + cos(pi * (t - W) / (T - W))) / 2 over the T iterations of
the training (Loshchilov & Hutter's SGDR without restarts), reaching lr_min at t = T.
"""
from __future__ import annotations

import bisect
import math


class LRSchedule:
    def __init__(
        self,
        base_lr: float,
        steps_per_epoch: int,
        gamma: float = 0.1,
        every_iters: int | None = None,
        milestones: list[int] | tuple[int, ...] = (),
        warmup_epochs: float = 0.0,
        cosine_steps: int | None = None,
        min_lr: float = 0.0,
    ):
        self.base_lr = base_lr
        self.cosine_steps = cosine_steps  # T: set for the cosine schedule
        self.min_lr = min_lr
        self.gamma = gamma
        self.every_iters = every_iters
        self.milestone_steps = sorted(int(m) * steps_per_epoch for m in milestones)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    def factor(self, step: int) -> float:
        """Multiplier of the base LR for the update that follows `step` completed iterations."""
        decays = bisect.bisect_right(self.milestone_steps, step)
        if self.every_iters:
            decays += step // self.every_iters
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warm * self.gamma**decays

    def lr(self, step: int) -> float:
        if self.cosine_steps is None:
            return self.base_lr * self.factor(step)
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.cosine_steps - self.warmup_steps))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def describe(self) -> str:
        parts = [f"lr {self.base_lr:g}"]
        if self.cosine_steps is not None:
            parts.append(f"cosine to {self.min_lr:g} at iteration {self.cosine_steps}")
        if self.every_iters:
            parts.append(f"x{self.gamma:g} every {self.every_iters} iterations")
        if self.milestone_steps:
            parts.append(f"x{self.gamma:g} at iterations {self.milestone_steps}")
        if self.warmup_steps:
            parts.append(f"linear warm-up over {self.warmup_steps} iterations")
        return ", ".join(parts)


def schedule_from_config(tcfg, steps_per_epoch: int, total_steps: int | None = None) -> LRSchedule:
    """The schedule of a trainer config; `total_steps` (default trainer.epochs x steps_per_epoch) is
    where a cosine schedule ends."""
    cosine = getattr(tcfg, "lr_schedule", "step") == "cosine"
    return LRSchedule(
        base_lr=tcfg.lr,
        steps_per_epoch=steps_per_epoch,
        gamma=tcfg.lr_gamma,
        every_iters=tcfg.lr_every_iters,
        milestones=list(tcfg.lr_milestones),
        warmup_epochs=tcfg.warmup_epochs,
        cosine_steps=(total_steps or tcfg.epochs * steps_per_epoch) if cosine else None,
        min_lr=getattr(tcfg, "lr_min", 0.0),
    )

