"""The per-epoch progress line: step/total, samples/s, loss, time left for the epoch and the phase;
a live bar on a terminal, periodic log lines otherwise (training/progress.py)."""
from __future__ import annotations

import io
import logging

from sparse_exp.training.progress import Progress, clock


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _progress(stream, logged, now, every_s=3.0):
    return Progress("train", epochs=2, steps_per_epoch=10, batch_size=100, num_samples=950, log=logged.append,
                    every_s=every_s, stream=stream, now=now)


def test_line_and_time_left_by_hand():
    now, logged = Clock(), []
    p = _progress(io.StringIO(), logged, now)
    p.start_epoch(0, 0)
    for step in range(1, 5):  # one second per step
        now.t += 1
        p.update(step)
    p.loss = 1.5
    # 4 steps in 4 s: 400 samples -> 100/s; 6 steps left in the epoch, 16 in the phase, evaluations not yet timed
    assert p.line(4) == "train epoch 1/2 | step 4/10 | 100 samples/s | loss 1.5000 | left: epoch 0:06, train 0:16 + evaluations"
    assert logged == ["  train epoch 1/2 | step 3/10 | 100 samples/s | loss - | left: epoch 0:07, train 0:17 + evaluations"]
    now.t = 10
    p.end_epoch()
    now.t = 12  # 2 s of evaluation and checkpoint between the epochs
    p.start_epoch(1, 10)
    now.t = 17
    # 5 steps of the second epoch in 5 s; 5 steps + 1 evaluation of 2 s left in the phase
    assert p.line(15) == "train epoch 2/2 | step 5/10 | 100 samples/s | loss - | left: epoch 0:05, train 0:07"


def test_live_bar_on_a_terminal_is_redrawn_in_place_and_cleared():
    now, logged, term = Clock(), [], Terminal()
    p = _progress(term, logged, now, every_s=1000)
    p.start_epoch(0, 0)
    now.t = 1
    p.update(5)
    assert term.getvalue().startswith("\r[##########..........] train epoch 1/2 | step 5/10")
    p.end_epoch()
    assert term.getvalue().endswith("\r") and logged == []
    pipe = io.StringIO()  # not a terminal: no bar
    q = _progress(pipe, logged, now)
    q.start_epoch(0, 0)
    now.t = 2
    q.update(3)
    assert pipe.getvalue() == ""


def test_clock():
    assert clock(5) == "0:05" and clock(125) == "2:05" and clock(3725) == "1:02:05"


def test_a_run_logs_progress_lines(run_experiment, caplog):
    with caplog.at_level(logging.INFO, logger="sparse_exp"):
        metrics, _ = run_experiment("method=snip", "trainer.epochs=1", "trainer.progress_every_s=1e-9")
    assert metrics["status"] == "completed"
    lines = [r.getMessage() for r in caplog.records if "samples/s | loss" in r.getMessage()]
    assert lines and lines[-1].startswith("  train epoch 1/1 | step 8/8 |"), lines[-3:]
