"""The command end to end in subprocesses on tiny synthetic data: outputs, TensorBoard, errors,
multirun, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, run_cli

TIMING_KEYS = {"seconds", "samples_per_s"}


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_run_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli([*TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "test accuracy at the best validation epoch" in proc.stdout
    for name in ("config.yaml", "metrics.json", "mask.npz", "compressed.npz", "checkpoint.pt", "run.log"):
        assert (run_dir / name).exists(), name
    assert "compressed.npz, checkpoint.pt" in proc.stdout  # the summary names what was written
    m = _metrics(run_dir)
    assert m["status"] == "completed"
    for key in ("test_acc", "best_val_acc", "best_epoch", "final_train_acc", "params", "compression", "layers",
                "mask_sha256", "time"):
        assert key in m, key
    assert set(m["params"]) >= {"total", "trainable", "total_weights", "trainable_weights"}
    assert m["params"]["total"] == 431_080 and m["params"]["total_weights"] == 430_500
    assert set(m["time"]) >= {"mask_s", "train_s"}
    assert len(m["history"]) == 2 and 0.0 <= m["test_acc"] <= 1.0
    assert m["test_acc"] == m["history"][m["best_epoch"] - 1]["test_acc"]

    # TensorBoard events read back with tensorboard's own reader.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss", "val/loss", "lr", "samples_per_s"):
        assert tag in tags, tag
    assert any(t.startswith("density/") for t in tags)
    assert [e.value for e in acc.Scalars("test/acc")] == pytest.approx([h["test_acc"] for h in m["history"]])


@pytest.mark.slow  # two CLI runs; same seed -> same mask/metrics is checked in-process (test_methods, test_resume)
def test_same_seed_same_metrics(tmp_path):
    results = []
    for name in ("a", "b"):
        proc = run_cli([*TINY, "trainer.epochs=1", f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        results.append(_metrics(tmp_path / name))
    a, b = results
    strip = lambda h: [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in h]
    assert strip(a["history"]) == strip(b["history"])
    assert a["mask_sha256"] == b["mask_sha256"]


def test_dry_run_trains_nothing(tmp_path):
    run_dir = tmp_path / "dry"
    proc = run_cli([*TINY, "dry_run=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = _metrics(run_dir)
    assert m["status"] == "dry_run" and m["history"] == [] and m["test_acc"] is None
    assert "dry run: masks computed, nothing trained" in proc.stdout and "nan%" not in proc.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["method=copz"], "method: unknown option 'copz'"),
        (["trainer.epochs=many"], "trainer.epochs: Value 'many' of type 'str' could not be converted to Integer"),
        (["trainer.epoch=3"], "trainer.epoch: no such key in trainer (trainer=demo); did you mean trainer.epochs?"),
        (["method.compression=2", "method=dense"], "method.compression"),
        (["model=vgg16", "dataset=synthetic", "dataset.shape=[1,28,28]"], "model=vgg16"),
        (["dataset=mnist", "dataset.root={tmp}/nothing"], "dataset.root"),
    ],
)
def test_bad_input_stops_before_training(tmp_path, args, needle):
    run_dir = tmp_path / "bad"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    error = [line for line in (proc.stderr + proc.stdout).splitlines() if needle in line]
    assert len(error) == 1 and "error: " in error[0], proc.stderr + proc.stdout  # one line says it all
    metrics = run_dir / "metrics.json"
    if metrics.exists():  # a failed run may say so, but never claims a result
        m = _metrics(run_dir)
        assert m["status"] == "failed" and "test_acc" not in m
    assert not (run_dir / "checkpoint.pt").exists()


def test_multirun_job_dirs_and_the_report_reads_the_sweep_unchanged(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY, "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "method=dense", "seed=0,1",
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_seed=0", "1_seed=1"]
    assert all(_metrics(j)["status"] == "completed" for j in jobs)
    report = subprocess.run([sys.executable, "-m", "sparse_exp.report", str(sweep)], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "| dense | 2 | 0 | 0 |" in report.stdout  # nothing varies but the seed: one row of two runs
    assert (sweep / "table.md").exists() and (sweep / "table.csv").exists()


@pytest.mark.slow  # tests/test_sweeps.py resumes mid-epoch after SIGTERM in the default suite
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    args = [*TINY, "trainer.epochs=3", "dataset.size=4000", "trainer.log_every=10"]
    full = tmp_path / "full"
    assert run_cli([*args, f"hydra.run.dir={full}"], cwd=tmp_path).returncode == 0

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "sparse_exp", *args, f"hydra.run.dir={killed}"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _metrics(killed)["status"] == "running", "the run finished before it could be killed"

    resumed = run_cli([f"resume={killed}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming after epoch" in resumed.stdout
    a, b = _metrics(full), _metrics(killed)
    strip = lambda h: [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in h]
    assert strip(a["history"]) == strip(b["history"])
    assert (a["test_acc"], a["best_val_acc"], a["mask_sha256"]) == (b["test_acc"], b["best_val_acc"], b["mask_sha256"])
    # resuming a finished run does nothing
    again = run_cli([f"resume={killed}"], cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout


def test_summary_names_the_final_epoch_when_there_is_no_validation_split(tmp_path, capsys):
    import sparse_exp.cli as cli

    metrics = {"status": "completed", "test_acc": 0.5, "best_val_acc": None, "best_epoch": -1, "final_train_acc": 0.6,
               "test_acc_selection": "final_epoch",
               "params": {"trainable": 1, "total": 2, "trainable_weights": 1, "total_weights": 2},
               "compression": {"q": 0.5, "q_beta": 0.5}}
    cli._print_summary(metrics, tmp_path)
    out = capsys.readouterr().out
    assert "test accuracy at the final epoch: 50.00% (no validation split" in out and "best validation" not in out
