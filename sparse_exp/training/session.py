"""A run's working state as methods see it: model, data, the current mask, trainings and checkpoints.

Methods call `set_mask` / `update_mask` to change what is trained and `train(phase)` for each
training they need (one for most methods; LTH and FT train several times). Every epoch ends with
an atomic checkpoint that holds the trainer, the mask, the method's own state and the finished
phases, so `resume=<run dir>` continues exactly where a killed run stopped.

Under torchrun every rank holds a Session; only the writer (rank 0) logs and saves, every rank
loads the checkpoint on resume, and every mask that is installed (initial mask, DST/GMP updates,
LTH rounds, a resumed mask) is agreed on and checked across the ranks (distributed.agree_on_mask).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from sparse_exp import distributed
from sparse_exp.kernels import SparseKernels
from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.build import architecture_tag
from sparse_exp.seeding import generator
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.tracking.files import save_torch
from sparse_exp.training.interrupt import NoGuard
from sparse_exp.training.trainer import PhaseResult, Trainer

log = logging.getLogger("sparse_exp")

CHECKPOINT = "checkpoint.pt"


class Session:
    def __init__(self, cfg, out_dir: Path, device: torch.device, model: nn.Module, data, method, tracker,
                 init_seed: int, resume_state: Optional[dict] = None, is_writer: bool = True):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = device
        self.model = model
        self.data = data
        self.method = method
        self.tracker = tracker
        self.init_seed = init_seed
        self.is_writer = is_writer
        self.params = prunable_parameters(model)
        self.enforcer = MaskEnforcer(self.params, Mask.ones(self.params), "dense", cfg.trainer.weight_decay)
        # which masked layers train on CSR kernels (sparse_exp/kernels); rebuilt whenever the mask changes
        self.kernels = SparseKernels(cfg.trainer.sparse_kernels, cfg.trainer.precision)
        self.phases: dict[str, PhaseResult] = {}
        self.mask_s = 0.0
        self.best_state: Optional[dict] = None
        self.best_mask: Optional[dict] = None
        self.probes: list = []  # callables(trainer) -> scalars, logged every `log_every` steps
        self.status = "running"
        self.resume_state = resume_state
        self.mask_agreement = {"mask_checks": 0, "masks_computed_differently": 0}  # several ranks only
        self._train_module: Optional[nn.Module] = None
        self.interrupt = NoGuard()  # experiment.run installs the signal handlers (training/interrupt.py)
        self.previous_elapsed_s = 0.0  # wall time of the processes before a resume
        self.started = time.perf_counter()
        if resume_state is not None:
            self._restore(resume_state)

    # logging ------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.is_writer:
            log.info(message)

    @property
    def step_offset(self) -> int:
        """TensorBoard steps run on across phases, so every training of a run has its own x-range."""
        return sum(p.steps for p in self.phases.values())

    def scalars(self, values: dict, step: int) -> None:
        self.tracker.scalars(values, self.step_offset + step)

    # masks --------------------------------------------------------------------------------
    @property
    def mask(self) -> Mask:
        return self.enforcer.mask

    def set_mask(self, mask: Mask, mode: str, decay_frozen: bool = False) -> None:
        """Install the mask that says what is trained; `mode` is prune or freeze (sparsity/enforce.py)."""
        where = "at the mask set before " + (f"the training after {', '.join(self.phases)}" if self.phases else "training")
        mask = self._agreed(mask.to(self.device), where)
        self.enforcer = MaskEnforcer(self.params, mask, mode, self.cfg.trainer.weight_decay, decay_frozen)
        self.enforcer.apply_()
        self.kernels.install(self.model, self.enforcer)
        self.report_mask()

    def update_mask(self, mask: Mask, trainer: Optional[Trainer] = None) -> None:
        """Change the mask during training (DST, GMP): zeroes newly pruned entries and resets the
        optimizer state of regrown ones."""
        where = f"at the mask update in phase {trainer.phase}, step {trainer.step}" if trainer else "at a mask update"
        self.enforcer.set_mask(self._agreed(mask.to(self.device), where), trainer.optimizer if trainer else None)
        self.kernels.install(self.model, self.enforcer)

    def _agreed(self, mask: Mask, where: str) -> Mask:
        """The mask every rank installs (rank 0's, checked by hash); the mask itself in one process."""
        if not distributed.active():
            return mask
        mask, same = distributed.agree_on_mask(mask, where)
        self.mask_agreement["mask_checks"] += 1
        self.mask_agreement["masks_computed_differently"] += int(not same)
        return mask

    def report_mask(self) -> None:
        mask = self.mask
        self.log(
            f"mask ({self.enforcer.mode}): {mask.kept():,} of {mask.numel():,} prunable weights trained "
            f"(density {mask.density():.4f}), sha256 {mask.sha256()[:12]}"
        )
        for layer in mask.layers():
            self.log(f"  {layer['name']:<32} {layer['kept']:>10,} / {layer['numel']:<10,} density {layer['density']:.4f}")
        for name in mask.empty_layers():
            self.log(f"WARNING: layer {name} is fully {'pruned' if self.enforcer.mode == 'prune' else 'frozen'} (no trained weight left)")

    @contextlib.contextmanager
    def timed_mask(self):
        """Time spent computing masks (scores, selection) goes to metrics.json time.mask_s."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.mask_s += time.perf_counter() - t0

    # data for scores --------------------------------------------------------------------------
    def score_batches(self, n: int, classes=None, batch_size: Optional[int] = None, stream: str = "score"):
        """Scoring data from its own random stream (independent of data order and initialisation)."""
        gen = generator(self.cfg.seed, stream)
        return self.data.score_batches(n, batch_size or self.cfg.trainer.batch_size, classes, gen)

    # training -----------------------------------------------------------------------------
    def train_module(self) -> nn.Module:
        """The module training steps run: the model, or under torchrun one DDP wrapper of it for all phases."""
        if self._train_module is None:
            self._train_module = distributed.wrap(self.model, self.device)
        return self._train_module

    def resuming_phase(self, phase: str) -> bool:
        """True if the checkpoint we resume from was written during (or at the end of) `phase`."""
        rs = self.resume_state
        return rs is not None and (rs.get("phase") == phase or phase in rs.get("phases", {}))

    def train(self, phase: str = "train", epochs: Optional[int] = None, start_state: Optional[dict] = None) -> PhaseResult:
        """Run one training. `start_state` (a trainer state dict, e.g. an LTH rewind point) starts
        it mid-way; a checkpoint of this phase resumes it; a finished phase returns its result."""
        if phase in self.phases:  # finished before a resume (e.g. killed while exporting): its status stands
            self.status = self.phases[phase].status
            return self.phases[phase]
        epochs = self.cfg.trainer.epochs if epochs is None else epochs
        self.tracker.set_phase(phase)
        trainer = Trainer(self, phase, epochs, probes=self.probes)
        rs = self.resume_state
        if rs is not None and rs.get("phase") == phase and rs.get("trainer") is not None:
            trainer.load_state_dict(rs["trainer"])
            self.log(f"{phase}: resuming after epoch {trainer.epoch} (step {trainer.step})")
            self.resume_state = None
        elif start_state is not None:
            trainer.load_state_dict(start_state)
        if self.cfg.dry_run:
            result = PhaseResult(phase=phase, status="dry_run")
        else:
            self.log(f"{phase}: {epochs} epochs x {trainer.steps_per_epoch} steps, {trainer.schedule.describe()}")
            result = trainer.fit()
        self.phases[phase] = result
        self.status = result.status
        self.last_trainer = trainer
        return result

    def on_new_best(self, trainer: Trainer) -> None:
        # The early-stopping model (best validation accuracy) is what gets exported.
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.best_mask = self.mask.state()

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        scalars = {f"{k}": v for k, v in record.items() if k not in ("epoch", "step") and isinstance(v, (int, float))}
        renamed = {}
        for k, v in scalars.items():
            split, _, metric = k.partition("_")
            renamed[f"{split}/{metric}" if split in ("train", "val", "test", "grad") else k] = v
        renamed.update({f"density/{n}": d for n, d in self.mask.layer_densities().items()})
        self.scalars(renamed, trainer.step)
        self.log(
            f"{trainer.phase} epoch {record['epoch']}/{trainer.epochs} | train loss {record['train_loss']:.4f} "
            f"acc {100 * record['train_acc']:.2f}% | val {100 * record['val_acc']:.2f}% | test {100 * record['test_acc']:.2f}% "
            f"| lr {record['lr']:.3g} | {record['seconds']:.1f} s, {record['samples_per_s']:.0f} samples/s"
        )
        self.save_checkpoint(trainer)
        self.tracker.flush()

    # checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, trainer: Optional[Trainer] = None, partial: Optional[dict] = None) -> None:
        """Atomic checkpoint of the run; `partial` marks one written mid-epoch (trainer.checkpoint_every_*,
        an interrupt) and holds that epoch's running sums, so a resumed epoch reports the same figures."""
        if not self.is_writer:
            return
        state = {
            "version": 1,
            "architecture": architecture_tag(self.cfg.model),  # checked by model.pretrained=<this run>
            "phase": trainer.phase if trainer else None,
            "trainer": trainer.state_dict(partial) if trainer else None,
            "model": self.model.state_dict(),
            "mask": self.mask.state(),
            "mask_mode": self.enforcer.mode,
            "decay_frozen": self.enforcer.decay_frozen,
            "kernels": self.kernels.state_dict(),
            "method": self.method.state_dict(),
            "phases": {k: dataclasses.asdict(v) for k, v in self.phases.items()},
            "best_state": self.best_state,
            "best_mask": self.best_mask,
            "mask_s": self.mask_s,
            "init_seed": self.init_seed,
            "global_step": self.step_offset + (trainer.step if trainer else 0),
            "elapsed_s": self.elapsed_s(),  # wall time of all processes so far (metrics.json time.total_s)
        }
        save_torch(self.out_dir / CHECKPOINT, state)

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        mask = self._agreed(Mask(state["mask"]).to(self.device), "at the mask of the checkpoint resumed from")
        self.enforcer = MaskEnforcer(self.params, mask, state["mask_mode"], self.cfg.trainer.weight_decay, state["decay_frozen"])
        self.kernels.load_state_dict(state.get("kernels"))
        self.kernels.install(self.model, self.enforcer)
        self.method.load_state_dict(state["method"])
        self.phases = {k: PhaseResult(**v) for k, v in state["phases"].items()}
        self.best_state = state.get("best_state")
        self.best_mask = state.get("best_mask")
        self.mask_s = state.get("mask_s", 0.0)
        self.init_seed = state.get("init_seed", self.init_seed)
        self.previous_elapsed_s = state.get("elapsed_s", 0.0)

    def elapsed_s(self) -> float:
        return self.previous_elapsed_s + time.perf_counter() - self.started

    # results ------------------------------------------------------------------------------
    def final_phase(self) -> Optional[PhaseResult]:
        return list(self.phases.values())[-1] if self.phases else None

    def model_copy(self) -> nn.Module:
        return copy.deepcopy(self.model)
