"""Learning-rate schedules of Tables A.9-A.11 as one function of the iteration.

lr(t) = lr0 * warmup(t) * gamma^(number of decays before t), where decays happen every N
iterations ("every 30k iterations") or at epoch milestones ("epochs 30/60/80"), and the linear
warm-up ramps over the first warmup_epochs * steps_per_epoch iterations (Goyal et al.).
"""
from __future__ import annotations

import bisect


class LRSchedule:
    def __init__(
        self,
        base_lr: float,
        steps_per_epoch: int,
        gamma: float = 0.1,
        every_iters: int | None = None,
        milestones: list[int] | tuple[int, ...] = (),
        warmup_epochs: float = 0.0,
    ):
        self.base_lr = base_lr
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
        return self.base_lr * self.factor(step)

    def describe(self) -> str:
        parts = [f"lr {self.base_lr:g}"]
        if self.every_iters:
            parts.append(f"x{self.gamma:g} every {self.every_iters} iterations")
        if self.milestone_steps:
            parts.append(f"x{self.gamma:g} at iterations {self.milestone_steps}")
        if self.warmup_steps:
            parts.append(f"linear warm-up over {self.warmup_steps} iterations")
        return ", ".join(parts)


def schedule_from_config(tcfg, steps_per_epoch: int) -> LRSchedule:
    return LRSchedule(
        base_lr=tcfg.lr,
        steps_per_epoch=steps_per_epoch,
        gamma=tcfg.lr_gamma,
        every_iters=tcfg.lr_every_iters,
        milestones=list(tcfg.lr_milestones),
        warmup_epochs=tcfg.warmup_epochs,
    )

