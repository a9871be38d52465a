"""Sweeps and interrupts through the command (subprocesses, tiny synthetic data): jobs validated before the
first one runs, method keys that only some jobs have, re-runs that skip finished jobs, failure summaries
and exit codes, SIGTERM mid-epoch then resume, resume with overrides that would change the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, run_cli

FAST = [*TINY, "trainer.epochs=1"]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir())


def test_mixed_method_sweep_applies_each_key_where_the_method_has_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *FAST, "method=snip,cops", "method.alpha=0.9", "method.score_batches=2", "method.compression=0.9",
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    snip, cops = _jobs(sweep)
    assert snip.name == "0_method=snip" and cops.name == "1_method=cops"
    s, c = _metrics(snip), _metrics(cops)
    assert s["status"] == c["status"] == "completed"
    assert s["not_applied"] == ["method.alpha=0.9"] and "not_applied" not in c
    assert s["config"]["method"]["score_batches"] == 2 and c["config"]["method"]["alpha"] == 0.9
    assert "job 0: not applied (method=snip has no such key): method.alpha=0.9" in proc.stdout
    assert "job 1 of 2" in proc.stdout and "sweep finished: 2 jobs: 2 completed" in proc.stdout


def test_a_key_that_no_job_has_is_an_error_before_anything_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *FAST, "method=snip,grasp", "method.alpha=0.9", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "method.alpha: no job of this sweep has this key" in proc.stderr
    assert not sweep.exists() or not _jobs(sweep)


def test_a_bad_value_in_a_later_job_stops_the_sweep_before_the_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    t0 = time.time()
    proc = run_cli(["-m", *FAST, "method=snip", "method.compression=0.5,0.9,1.5", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "job 2 (" in proc.stderr and "method.compression" in proc.stderr
    assert not sweep.exists() or not _jobs(sweep)  # job 0 never started
    assert time.time() - t0 < 60


def test_failed_job_exits_nonzero_and_a_rerun_skips_resumes_and_reruns(tmp_path):
    sweep = tmp_path / "sweep"
    # job 2 fails at run time: no MNIST files under the given root
    args = ["-m", *FAST, "trainer.max_steps_per_epoch=2", "method=snip", "method.compression=0.9",
            "dataset=synthetic,mnist", "seed=0,1", f"dataset.root={tmp_path / 'nothing'}", f"hydra.sweep.dir={sweep}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ok, cut, failed, failed2 = _jobs(sweep)
    assert _metrics(ok)["status"] == _metrics(cut)["status"] == "completed"
    assert _metrics(failed)["status"] == _metrics(failed2)["status"] == "failed"
    assert "2 of 4 jobs failed:" in proc.stdout and str(failed) in proc.stdout
    assert _metrics(failed)["error"].splitlines()[0] in proc.stdout  # the first line of its error

    finished = _metrics(cut)
    (cut / "metrics.json").write_text(json.dumps({"status": "interrupted", "config": finished["config"]}))
    events_before = sorted((ok / "tb").iterdir())
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 1
    assert "job 0 completed earlier, skipped" in again.stdout
    assert "job 1 was interrupted earlier; resuming it from its checkpoint" in again.stdout
    assert "job 2 failed earlier; running it again" in again.stdout
    assert sorted((ok / "tb").iterdir()) == events_before  # nothing rewritten, no second curve
    assert _metrics(cut)["status"] == "completed" and _metrics(cut)["test_acc"] == finished["test_acc"]
    # the short way to name an earlier sweep does the same
    short = run_cli([f"resume={sweep}"], cwd=tmp_path)
    assert short.returncode == 1 and "job 1 completed earlier, skipped" in short.stdout


def _start(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "sparse_exp", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # 50 s; in the fast suite: test_trainer's signal test and test_resume's cut-and-resume runs
def test_sigterm_mid_epoch_checkpoints_and_resume_equals_the_uninterrupted_run(tmp_path):
    args = [*TINY, "trainer.epochs=2", "dataset.size=6000", "trainer.log_every=5", "method=snip", "method.compression=0.9"]
    full = tmp_path / "full"
    assert run_cli([*args, f"hydra.run.dir={full}"], cwd=tmp_path).returncode == 0

    cut = tmp_path / "cut"
    proc = _start([*args, f"hydra.run.dir={cut}"], tmp_path)
    deadline = time.time() + 240
    log = cut / "run.log"
    while not (log.exists() and "train: " in log.read_text()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the first epoch's steps
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    m = _metrics(cut)
    assert m["status"] == "interrupted" and m["checkpoint"] is True and "test_acc" not in m
    line = [x for x in err.splitlines() if "interrupted by SIGTERM" in x]
    assert len(line) == 1 and f"continue with: sparse-exp resume={cut}" in line[0] and "Traceback" not in err
    state = torch.load(cut / "checkpoint.pt", weights_only=True)
    steps_per_epoch = 6000 * 9 // 10 // 50
    assert state["trainer"]["partial"] is not None and state["trainer"]["step"] % steps_per_epoch != 0  # mid-epoch
    elapsed_before = state["elapsed_s"]

    resumed = run_cli([f"resume={cut}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    a, b = _metrics(full), _metrics(cut)
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert (a["test_acc"], a["best_val_acc"], a["mask_sha256"]) == (b["test_acc"], b["best_val_acc"], b["mask_sha256"])
    za, zb = np.load(full / "compressed.npz"), np.load(cut / "compressed.npz")
    assert sorted(za.files) == sorted(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)
    assert b["time"]["total_s"] > elapsed_before  # both processes counted


def test_resume_refuses_overrides_that_change_the_run(tmp_path, make_cfg):
    import pytest

    import sparse_exp.cli as cli
    from sparse_exp.errors import ConfigError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(make_cfg(*FAST), run_dir / "config.yaml")
    (run_dir / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    proc = run_cli([f"resume={run_dir}", "trainer.epochs=5", "method=snip"], cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = [x for x in (proc.stdout + proc.stderr).splitlines() if "error: resume:" in x]
    assert "trainer.epochs=5 (the run has trainer.epochs=1)" in line and "method=snip (the run has method=freezenet)" in line
    # where and how fast may change; the saved config gets them, everything else stays the run's own
    allowed = cli._resumed_config(make_cfg(*FAST, "trainer.threads=2", "device=cpu"), run_dir, ["trainer.threads=2", "device=cpu"])
    assert (allowed.trainer.threads, allowed.device, allowed.resume) == (2, "cpu", str(run_dir))
    with pytest.raises(ConfigError, match="trainer.lr=0.5"):
        cli._resumed_config(make_cfg(*FAST, "trainer.lr=0.5"), run_dir, ["trainer.lr=0.5"])


def test_hparams_are_written_without_a_per_run_experiment_summary(tmp_path):
    # TensorBoard shows the union of all runs' hyperparameters only when no run carries an experiment summary
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from sparse_exp.tracking.tensorboard import Tracker

    for name, hp in (("a", {"method": "snip", "lr": 0.1}), ("b", {"method": "cops", "method.alpha": 0.9})):
        tracker = Tracker(tmp_path / name)
        tracker.hparams(hp, {"test_acc": 0.5})
        tracker.close()
    for name in ("a", "b"):
        tags = []
        for f in (tmp_path / name / "tb").iterdir():
            for event in EventFileLoader(str(f)).Load():
                tags += [v.tag for v in event.summary.value]
        assert "_hparams_/session_start_info" in tags and "_hparams_/experiment" not in tags


def test_interrupt_checkpoints_then_hands_the_signal_to_the_previous_handler(make_cfg, tmp_path, monkeypatch):
    """submitit's handler (requeue) must run after the checkpoint at the current step is on disk."""
    import threading

    import pytest

    from sparse_exp import experiment
    from sparse_exp.training import trainer as trainer_module
    from sparse_exp.training.interrupt import Interrupted

    assert threading.current_thread() is threading.main_thread()
    run_dir = tmp_path / "run"
    seen = []
    real_due = trainer_module.Trainer._checkpoint_due

    def due(self):  # a signal arrives while step 5 runs
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real_due(self)

    monkeypatch.setattr(trainer_module.Trainer, "_checkpoint_due", due)
    previous = signal.signal(signal.SIGUSR1, lambda s, f: seen.append((s, (run_dir / "checkpoint.pt").exists())))
    try:
        with pytest.raises(Interrupted) as info:
            experiment.run(make_cfg(*FAST, "method=dense"), run_dir)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert info.value.exit_code == 128 + signal.SIGUSR1 and "step 6" in str(info.value)
    assert seen == [(signal.SIGUSR1, True)]
    assert _metrics(run_dir)["status"] == "interrupted"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["trainer"]["step"] == 6


def test_resume_without_a_checkpoint_clears_the_aborted_attempts_events(tmp_path, make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparse_exp import experiment

    run_dir = tmp_path / "run"
    cfg = make_cfg(*TINY, "trainer.max_steps_per_epoch=3")
    experiment.run(cfg, run_dir)
    (run_dir / "checkpoint.pt").unlink()  # as if killed before its first checkpoint
    (run_dir / "metrics.json").write_text(json.dumps({"status": "running"}))
    cfg.resume = str(run_dir)
    experiment.run(cfg, run_dir)
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("test/acc")] == [3, 6]  # one curve, not two on top of each other
