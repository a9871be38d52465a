"""The progress line of a training epoch: step/total, samples/s, the running loss and the time
left for the epoch and for the whole training phase.

On a terminal (stdout is a tty) it is a live bar redrawn in place a few times a second; in a log
file, a pipe or under SLURM it is a plain log line every `trainer.progress_every_s` seconds
(also into run.log). The trainer calls `start_epoch`, `update` after every step (host-side
arithmetic only: the loss is the running loss the trainer already reads every `log_every` steps,
so no extra device synchronisation), and `end_epoch`.

Time left for the phase = steps left x seconds per step (this epoch's rate) + the evaluations
still to come x the last evaluation's seconds (validation, test, checkpoint between epochs).
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

BAR_WIDTH = 20
REDRAW_S = 0.25


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, phase: str, epochs: int, steps_per_epoch: int, batch_size: int, num_samples: int,
                 log: Callable[[str], None], every_s: float = 30.0, enabled: bool = True,
                 stream: Optional[TextIO] = None, now: Callable[[], float] = time.perf_counter):
        self.phase, self.epochs, self.steps_per_epoch = phase, epochs, steps_per_epoch
        self.batch_size, self.num_samples = batch_size, num_samples
        self.log, self.every_s, self.enabled, self.now = log, every_s, enabled, now
        self.stream = stream if stream is not None else sys.stdout
        self.live = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.loss: Optional[float] = None  # the last running loss the trainer read
        self.eval_s: Optional[float] = None  # seconds between two epochs' training (evaluation, checkpoint)
        self._epoch = 0
        self._first_step = 0
        self._t0 = self._last_log = self._last_draw = now()
        self._ended: Optional[float] = None
        self._drawn = 0

    @classmethod
    def of(cls, trainer) -> "Progress":
        session = trainer.session
        return cls(trainer.phase, trainer.epochs, trainer.steps_per_epoch, trainer.data.train.batch_size,
                   trainer.data.train.num_samples, session.log, float(getattr(trainer.tcfg, "progress_every_s", 30.0)),
                   enabled=session.is_writer)

    def start_epoch(self, epoch: int, step: int) -> None:
        """Epoch `epoch` (0-based) starts at global step `step` (a resumed epoch may start mid-way)."""
        t = self.now()
        if self._ended is not None:
            self.eval_s = t - self._ended
        self._epoch, self._first_step = epoch, step
        self.loss = None
        self._t0 = self._last_log = self._last_draw = t

    def line(self, step: int) -> str:
        """The progress text after `step` completed steps of the phase."""
        in_epoch = step - self._epoch * self.steps_per_epoch
        done = step - self._first_step
        elapsed = max(self.now() - self._t0, 1e-9)
        per_step = elapsed / done if done else None
        samples = min(in_epoch * self.batch_size, self.num_samples) - min(
            (self._first_step - self._epoch * self.steps_per_epoch) * self.batch_size, self.num_samples)
        parts = [f"{self.phase} epoch {self._epoch + 1}/{self.epochs}", f"step {in_epoch}/{self.steps_per_epoch}",
                 f"{samples / elapsed:,.0f} samples/s", f"loss {self.loss:.4f}" if self.loss is not None else "loss -"]
        if per_step is not None:
            left_epoch = (self.steps_per_epoch - in_epoch) * per_step
            left_phase = (self.epochs * self.steps_per_epoch - step) * per_step
            evals_left = self.epochs - self._epoch  # this epoch's evaluation and every later one
            left_phase += evals_left * (self.eval_s or 0.0)
            parts.append(f"left: epoch {clock(left_epoch)}, {self.phase} {clock(left_phase)}"
                         + ("" if self.eval_s is not None or self.epochs == 1 else " + evaluations"))
        return " | ".join(parts)

    def update(self, step: int) -> None:
        """After every optimizer step; draws or logs when it is time to."""
        if not self.enabled:
            return
        t = self.now()
        if self.live and t - self._last_draw >= REDRAW_S:
            self._draw(step)
            self._last_draw = t
        if t - self._last_log >= self.every_s:
            self._clear()
            self.log("  " + self.line(step))
            self._last_log = t

    def _draw(self, step: int) -> None:
        in_epoch = step - self._epoch * self.steps_per_epoch
        filled = int(BAR_WIDTH * in_epoch / max(1, self.steps_per_epoch))
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.line(step)}"
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def end_epoch(self) -> None:
        """The epoch's steps are done: remove the bar before the epoch's result line is logged."""
        if self.enabled:
            self._clear()
        self._ended = self.now()
