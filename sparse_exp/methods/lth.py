"""Lottery tickets with rewinding (Frankle et al.; IP appendix G.2, thesis 2.3.1 and 5.5.1).

    round0      train densely (all-ones mask, pruned mode); at iteration t0 (`rewind_step`, 500)
                keep the whole state: model (weights, BatchNorm statistics, filter bases in the
                interspace) and trainer (optimizer momentum, step -> LR schedule, grad scaler)
    round r>=1  prune globally by magnitude to floor(0.8^r D) kept weights (20% of the remaining
                ones), the final linear layer kept dense; rewind model and trainer to t0, zero the
                pruned entries and train again from iteration t0
    last round  clipped to exactly floor((1 - q) D) kept weights; it is the final training

So a run has 1 + ceil(log(1 - q) / (log 4 - log 5)) trainings (eq. A.75), one phase `round<r>`
each (metrics.json lists them all; `lth.rounds` has kept counts and accuracies per round). Every
level 1 - 0.8^r of a run is itself the lottery ticket at that compression, so one run at the
highest q of a figure yields all lower levels too (`q_with_bases` also counts the trained filter
bases of the interspace, the x-axis of Fig. 5.10); each round's mask stays in <run>/mask_round<r>.npz
with its layer densities and FLOPs in `lth.rounds` (Figs. 5.8, A6(b)). Rounds resume on their own: the rewind
snapshot lives in the method state of every checkpoint.

q counts all prunable weights, the dense classifier included, so the other layers carry the whole
budget: round r keeps K_r - |classifier| of them. A q whose floor((1 - q) D) is below the
classifier's size is unreachable (ConfigError).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.measure.flops import flops_summary
from sparse_exp.measure.storage import basis_parameters, q_with_bases
from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.schedules import lth_kept_counts
from sparse_exp.sparsity.select import global_mask


@dataclass
class LTHConfig(MethodConfig):
    name: str = "lth"
    compression: float = 0.9
    prune_fraction: float = 0.2  # of the remaining weights per round (eq. A.75: log 4 - log 5 = log 0.8)
    rewind_step: int = 500  # t0: the iteration survivors and training state are rewound to (0: initialisation)
    dense_classifier: bool = True  # keep the final linear layer dense (appendix G.2, after Frankle et al.)


def detached_copy(obj: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (state dicts hold live tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(detached_copy(v) for v in obj)
    return obj


@register_method("lth", LTHConfig)
class LotteryTicket(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.rewind_step = int(cfg.rewind_step)  # a plain int for the per-step test
        self.rewind: Optional[dict] = None  # {"model": state dict, "trainer": trainer state or None}
        self.round = 0
        self.plan: list[int] = []  # kept prunable weights per round, round 0 = all
        self.rounds: list[dict] = []

    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        if not 0.0 < cfg.prune_fraction < 1.0:
            raise ConfigError(f"method.prune_fraction must lie in (0, 1) (fraction of the remaining weights pruned per round); got {cfg.prune_fraction}")
        if cfg.rewind_step < 0:
            raise ConfigError(f"method.rewind_step must be >= 0 (the iteration t0 to rewind to); got {cfg.rewind_step}")

    # plan ----------------------------------------------------------------------------------
    def classifier(self, session) -> Optional[str]:
        if not self.cfg.dense_classifier:
            return None
        name = f"{session.model.classifier_name}.weight"
        return name if name in session.params else None

    def make_plan(self, session) -> list[int]:
        total = sum(p.numel() for p in session.params.values())
        bases = basis_parameters(session.model) if getattr(self.cfg, "count_bases", False) else 0
        counts = lth_kept_counts(total, self.cfg.compression, self.cfg.prune_fraction, bases)
        cls = self.classifier(session)
        dense = session.params[cls].numel() if cls else 0
        final = counts[-1] if counts else total
        if final < dense:
            raise ConfigError(
                f"method.compression={self.cfg.compression} is unreachable with the classifier {cls} kept dense: it keeps "
                f"{final:,} of {total:,} prunable weights but the classifier alone has {dense:,} (at most q = "
                f"{1 - dense / total:.6f}); lower q or set method.dense_classifier=false"
            )
        return [total, *counts]

    # driver --------------------------------------------------------------------------------
    def run(self, session) -> None:
        self.plan = self.make_plan(session)
        total = self.plan[0]
        session.log(f"lth: {len(self.plan)} trainings (eq. A.75), kept weights per round "
                    f"{', '.join(f'{k:,}' for k in self.plan)}; rewind to iteration {self.cfg.rewind_step}")
        rounds = 1 if session.cfg.dry_run else len(self.plan)
        bases, trained_bases = basis_parameters(session.model), basis_parameters(session.model, trainable_only=True)
        self.rounds = []
        for r in range(rounds):
            phase = f"round{r}"
            if phase not in session.phases and not session.resuming_phase(phase):
                self.begin_round(session, r)
            self.round = r
            start = detached_copy(self.rewind["trainer"]) if r and self.rewind and self.rewind["trainer"] else None
            result = session.train(phase, start_state=start)
            kept = self.plan[r]
            self.rounds.append({
                "round": r, "phase": phase, "kept": kept, "compression": 1.0 - kept / total,
                "q_with_bases": q_with_bases(kept, total, trained_bases, bases), "status": result.status,
                "test_acc": result.test_acc, "best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch,
                "final_train_acc": result.final_train_acc, "final_test_acc": result.final_test_acc,
                **self.round_measurements(session, r),
            })
            if result.status != "completed":
                break

    def round_measurements(self, session, r: int) -> dict:
        """Round r's own mask (<run>/mask_round<r>.npz), layer densities, FLOPs and theoretical
        speed-up: Figs. 5.8(a, b) and A6(b) plot them per round, and later rounds replace the mask.
        The file is written when the round ends; a resumed run reads the rounds it finished before."""
        if not session.is_writer:
            return {}
        path = session.out_dir / f"mask_round{r}.npz"
        if not path.exists():  # the round trained just now: the installed mask is its own
            session.mask.save(path)
        mask = Mask.load(path)
        flops = flops_summary(session.model, tuple(session.data.input_shape), mask.layer_densities(), per_layer=False)
        return {"mask_file": path.name, "layers": mask.layer_densities(),
                "flops": {k: flops[k] for k in ("dense", "sparse", "speedup", "overhead")}}

    def begin_round(self, session, r: int) -> None:
        if r == 0:
            session.set_mask(Mask.ones(session.params), mode="prune")
            if self.cfg.rewind_step == 0:  # classic LTH: rewind to the initialisation
                self.rewind = {"model": detached_copy(session.model.state_dict()), "trainer": None}
            return
        if self.rewind is None:
            raise RuntimeError("lth: no rewind point was captured in round0")
        with session.timed_mask():
            mask = self.prune(session, self.plan[r])
        session.model.load_state_dict(self.rewind["model"])
        session.log(f"lth round {r}: pruned to {self.plan[r]:,} weights (q = {1 - self.plan[r] / self.plan[0]:.4f}), "
                    f"rewound to iteration {self.cfg.rewind_step}")
        session.set_mask(mask, mode="prune")  # zeroes the pruned entries of the rewound weights

    @torch.no_grad()
    def prune(self, session, kept: int) -> Mask:
        """Global magnitude pruning of the surviving weights to `kept` (the classifier stays dense)."""
        cls = self.classifier(session)
        current = session.mask.masks
        scores = {n: torch.where(current[n], p.detach().abs(), -1.0) for n, p in session.params.items() if n != cls}
        dense = session.params[cls].numel() if cls else 0
        chosen = global_mask(scores, kept - dense).masks
        return Mask({n: chosen[n] if n != cls else torch.ones_like(current[n]) for n in session.params})

    # hooks ---------------------------------------------------------------------------------
    def after_step(self, trainer, step: int) -> None:
        if step == self.rewind_step and self.rewind is None and trainer.phase == "round0":
            state = trainer.state_dict()
            start = {k: state[k] for k in ("step", "optimizer", "scaler")}
            # The epoch the next iteration belongs to: t0 at the end of an epoch starts the next one (the
            # running epoch's index would resume an epoch with no batches left: 0 samples, a NaN loss).
            start["epoch"] = step // trainer.steps_per_epoch
            self.rewind = {
                "model": detached_copy(trainer.model.state_dict()),
                # A new round starts from here with its own history and early-stopping record.
                "trainer": detached_copy(start),
            }
            trainer.session.log(f"lth: rewind point captured at iteration {step}")
        elif step == 1 and trainer.phase == "round0" and len(self.plan) > 1 and self.cfg.rewind_step >= trainer.total_steps:
            raise ConfigError(f"method.rewind_step={self.cfg.rewind_step} is not inside the first training "
                              f"({trainer.total_steps} iterations); lower it")

    # state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rewind": self.rewind, "round": self.round, "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        self.rewind = state.get("rewind")
        self.round = state.get("round", 0)

    def summary(self) -> dict:
        return {"lth": {"trainings": len(self.plan), "rewind_step": self.cfg.rewind_step,
                        "prune_fraction": self.cfg.prune_fraction, "dense_classifier": self.cfg.dense_classifier,
                        "rounds": self.rounds}}


__all__ = ["LTHConfig", "LotteryTicket", "detached_copy"]
