"""The plain training loop: SGD with momentum (or Adam/AdamW), the LR schedules, per-epoch evaluation.

Read top to bottom: `fit` runs epochs; `train_epoch` is forward, backward, method hook, mask,
optimizer step, LR for the next step, method hook. Metrics are accumulated on the device and read
only every `log_every` steps, so the loop issues no host synchronisation per step. The method is
only ever called through its hooks; the trainer never asks which method it runs. Under torchrun
the step runs the DistributedDataParallel wrapper of the model on this rank's slice of the batch
(sparse_exp/distributed.py); the metrics are summed over the ranks when they are read.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from sparse_exp import distributed
from sparse_exp.training.evaluate import evaluate
from sparse_exp.training.interrupt import Interrupted
from sparse_exp.training.optim import build_optimizer, configure_decay
from sparse_exp.training.progress import Progress
from sparse_exp.training.schedule import schedule_from_config

Probe = Callable[["Trainer"], dict]


@dataclass
class PhaseResult:
    phase: str
    status: str  # completed | diverged
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    test_acc: float = float("nan")  # test accuracy at the best-validation epoch (early stopping; the final one without validation set)
    final_train_acc: float = float("nan")
    final_val_acc: float = float("nan")
    final_test_acc: float = float("nan")
    steps: int = 0
    train_s: float = 0.0


class Trainer:
    def __init__(self, session, phase: str, epochs: int, probes: Optional[list[Probe]] = None):
        self.session = session
        self.phase = phase
        self.epochs = epochs
        self.model: nn.Module = session.model
        self.net: nn.Module = session.train_module()  # what the step runs: the model, or its DDP wrapper
        self.data = session.data
        self.device: torch.device = session.device
        self.enforcer = session.enforcer
        self.kernels = session.kernels
        self.method = session.method
        self.tcfg = session.cfg.trainer
        self.probes = probes or []
        self.steps_per_epoch = len(self.data.train)
        if self.tcfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, self.tcfg.max_steps_per_epoch)
        self.total_steps = self.steps_per_epoch * epochs
        self.optimizer = build_optimizer(self.model, self.enforcer, self.tcfg)
        self.schedule = schedule_from_config(self.tcfg, self.steps_per_epoch, self.total_steps)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.tcfg.label_smoothing)
        self.precision = self.tcfg.precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.channels_last = bool(self.tcfg.channels_last) and self.device.type == "cuda"
        self.world = distributed.world_size()
        # progress
        self.step = 0
        self.epoch = 0
        self.history: list[dict] = []
        self.best: dict = {"val_acc": -1.0, "epoch": -1, "test_acc": float("nan")}
        self.train_s = 0.0
        self.resumed_partial: Optional[dict] = None  # running sums of an epoch cut by a mid-epoch checkpoint
        self.resumed_seconds = 0.0
        self._epoch_t0 = time.perf_counter()
        self._last_checkpoint = (0, time.perf_counter())
        self.progress = Progress.of(self)  # the per-epoch progress line (training/progress.py)
        self.enforcer.apply_(self.optimizer)
        self._set_lr()

    # ------------------------------------------------------------------------------------------
    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _set_lr(self) -> None:
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ------------------------------------------------------------------------------------------
    def fit(self) -> PhaseResult:
        status = "completed"
        while self.epoch < self.epochs:
            epoch = self.epoch
            t0 = self._epoch_t0 = time.perf_counter() - self.resumed_seconds
            self.resumed_seconds = 0.0
            train = self.train_epoch(epoch)
            seconds = time.perf_counter() - t0
            self.train_s += seconds
            if not math.isfinite(train["loss"]):
                status = "diverged"
                self.session.log(f"{self.phase}: loss became {train['loss']} in epoch {epoch + 1}; stopping (status diverged)")
                break
            val_loss, val_acc = evaluate(self.model, self.data.val, self.device, self.autocast)
            test_loss, test_acc = evaluate(self.model, self.data.test, self.device, self.autocast)
            record = {
                "epoch": epoch + 1,
                "step": self.step,
                "lr": self.lr,
                "train_loss": train["loss"],
                "train_acc": train["acc"],
                "val_loss": val_loss,
                "val_acc": val_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": seconds,
                "samples_per_s": train["samples"] / seconds if seconds > 0 else float("nan"),
                **train["extra"],
            }
            self.history.append(record)
            # dataset.val_fraction=0 leaves no validation set: nothing to select on, the final epoch counts
            if self.data.val.num_samples == 0 or val_acc > self.best["val_acc"]:
                self.best = {"val_acc": val_acc, "epoch": epoch + 1, "test_acc": test_acc}
                self.session.on_new_best(self)
            self.epoch += 1
            self.method.on_epoch_end(self, epoch)
            self.session.on_epoch_end(self, record)
        last = self.history[-1] if self.history else {}
        return PhaseResult(
            phase=self.phase,
            status=status,
            history=self.history,
            best_epoch=self.best["epoch"],
            best_val_acc=self.best["val_acc"] if self.best["epoch"] > 0 else float("nan"),
            test_acc=self.best["test_acc"],
            final_train_acc=last.get("train_acc", float("nan")),
            final_val_acc=last.get("val_acc", float("nan")),
            final_test_acc=last.get("test_acc", float("nan")),
            steps=self.step,
            train_s=self.train_s,
        )

    def train_epoch(self, epoch: int) -> dict:
        model, device = self.model, self.device
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        samples = 0
        flow = []  # L1 norms of the trained weights' gradients at log steps (Figs. 3.1, 3.5b)
        extra: dict = {}
        partial, self.resumed_partial = self.resumed_partial, None
        if partial is not None and partial["epoch"] == epoch:  # resuming from a mid-epoch checkpoint
            loss_sum += partial["loss_sum"].to(device)
            correct += partial["correct"].to(device)
            samples, flow = partial["samples"], list(partial["flow"])
        # A phase may start mid-epoch (LTH rewinds to iteration t0; a mid-epoch checkpoint): skip the
        # batches already seen (an epoch's order and augmentation are drawn up front, so this is exact).
        done = self.step - epoch * self.steps_per_epoch
        batches = itertools.islice(self.data.train.epoch(epoch), done, self.steps_per_epoch)
        self.progress.start_epoch(epoch, self.step)
        guard = self.session.interrupt
        guard.deferred = True  # a signal now only raises a flag: the step finishes, then we checkpoint
        try:
            for x, y in batches:
                if self.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)  # pragma: no mutate (CUDA only)
                if self.kernels.active:  # a method that reads all of dL/dW in this step (RigL) gets it dense
                    self.kernels.begin_step(self.method.needs_dense_gradients(self, self.step))
                with self.autocast():
                    out = self.net(x)
                    loss = self.criterion(out.float(), y)
                self.optimizer.zero_grad(set_to_none=True)
                backward_loss = loss
                if self.world > 1:  # this rank's share of the global batch (1 for equal slices)
                    share = distributed.batch_share(y.shape[0], self.step - epoch * self.steps_per_epoch,
                                                    self.data.train.num_samples, self.data.train.batch_size)
                    backward_loss = loss if share == 1.0 else loss * share
                self.scaler.scale(backward_loss).backward()
                if self.scaler.is_enabled():
                    self.scaler.unscale_(self.optimizer)  # pragma: no mutate (fp16 only, which needs CUDA)
                self.method.after_backward(self, self.step)
                log_now = (self.step + 1) % self.tcfg.log_every == 0
                if log_now:  # the loss gradient of the trained weights, before decay is folded in
                    flow.append(self.enforcer.trained_grad_l1())
                self.enforcer.prepare_gradients()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.kernels.active:  # auto times whole steps to choose its plan (kernels/trial.py)
                    self.kernels.end_step()
                self.step += 1
                self._set_lr()
                self.method.after_step(self, self.step)
                loss_sum += loss.detach().double() * y.numel()
                correct += (out.detach().argmax(1) == y).sum()
                samples += y.numel()
                if log_now:
                    total_loss, total_samples = distributed.sum_across_ranks(loss_sum, samples)
                    running = float(total_loss) / total_samples
                    scalars = {"train/loss_running": running, "lr": self.lr}
                    for probe in self.probes:
                        scalars.update(probe(self))
                    self.session.scalars(scalars, self.step)
                    self.progress.loss = running
                    if not math.isfinite(running):
                        break
                self.progress.update(self.step)
                if guard.received is not None or self._checkpoint_due():
                    self.session.save_checkpoint(self, partial={
                        "epoch": epoch, "loss_sum": loss_sum.cpu(), "correct": correct.cpu(), "samples": samples,
                        "flow": list(flow), "seconds": time.perf_counter() - self._epoch_t0})
                    self._last_checkpoint = (self.step, time.perf_counter())
                    if guard.received is not None:
                        raise Interrupted(guard.received, f" at epoch {epoch + 1} step {self.step}")
        finally:
            guard.deferred = False
        self.progress.end_epoch()
        distributed.sync_buffers(model)  # one set of BatchNorm statistics for evaluation and checkpoints
        loss_sum, correct, samples = distributed.sum_across_ranks(loss_sum, correct, samples)
        if flow:
            t = torch.tensor(flow, dtype=torch.float64)
            extra["grad_l1_mean"] = float(t.mean())
            extra["grad_l1_std"] = float(t.std()) if len(flow) > 1 else 0.0
        loss = float(loss_sum) / samples if samples else float("nan")
        return {"loss": loss, "acc": int(correct) / samples if samples else float("nan"), "samples": samples, "extra": extra}

    def _checkpoint_due(self) -> bool:
        """trainer.checkpoint_every_steps / checkpoint_every_min: mid-epoch checkpoints (epochs always end with one)."""
        every_steps, every_min = self.tcfg.checkpoint_every_steps, self.tcfg.checkpoint_every_min
        last_step, last_t = self._last_checkpoint
        if every_steps and self.step - last_step >= every_steps:
            return True
        return bool(every_min) and time.perf_counter() - last_t >= 60 * every_min

    # resume -------------------------------------------------------------------------------
    def state_dict(self, partial: Optional[dict] = None) -> dict:
        """The trainer's state; `partial` (a mid-epoch checkpoint) holds the cut epoch's running sums."""
        return {
            "partial": partial,
            "phase": self.phase,
            "step": self.step,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best": self.best,
            "train_s": self.train_s,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", self.best))
        self.train_s = state.get("train_s", 0.0)
        self.resumed_partial = state.get("partial")
        self.resumed_seconds = self.resumed_partial["seconds"] if self.resumed_partial else 0.0
        self._last_checkpoint = (self.step, time.perf_counter())
        # The state may come from another mask mode (an LTH rewind point saved while dense):
        # re-derive each group's decay and zero the momentum of masked entries.
        configure_decay(self.optimizer, self.enforcer, self.tcfg.weight_decay)
        self.enforcer.apply_(self.optimizer)
        self._set_lr()
