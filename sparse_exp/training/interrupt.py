"""Interrupts a run survives: Ctrl-C (SIGINT), SIGTERM (SLURM before preemption or at the time limit)
and SIGUSR1/SIGUSR2 (submitit's timeout and preemption signals).

While a training step runs, a signal only raises a flag: the trainer finishes the step, writes a
checkpoint at that step and raises `Interrupted` (training/trainer.py), so `resume=<run dir>` continues
exactly there. Outside the step loop (loading data, computing masks) the signal raises `Interrupted` at
once and the run continues from its last checkpoint. The caller records `status: interrupted`, prints
how to continue and exits 128 + signal number (130 for SIGINT, 143 for SIGTERM). A handler that was
installed before (submitit's, which requeues the job) is called after the checkpoint is written.
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class Interrupted(BaseException):  # like KeyboardInterrupt: no `except Exception` swallows it
    def __init__(self, signum: int, where: str = ""):
        super().__init__(f"interrupted by {signal.Signals(signum).name}{where}")
        self.signum = signum
        self.where = where

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class InterruptGuard:
    """Installs the handlers for the lifetime of a run (main thread only; elsewhere it does nothing)."""

    def __init__(self):
        self.received: Optional[int] = None
        self.deferred = False  # True inside the step loop: record the signal, let the step finish
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if not self.deferred:
            raise Interrupted(signum)

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def chain(self, signum: int) -> None:
        """Hand the signal to the handler that was there before (submitit requeues the job and exits)."""
        previous = self._previous.get(signum)
        if callable(previous) and previous not in (signal.default_int_handler,):
            previous(signum, None)


class NoGuard:
    """For code that trains outside a run (tests, benchmarks): never interrupted."""

    received: Optional[int] = None
    deferred = False
