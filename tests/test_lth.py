"""Lottery tickets with rewinding (IP appendix G.2): the number of trainings of eq. A.75, exact final
density, rewinding to the iteration-t0 state under the mask (filter bases included), the dense
classifier, and resume after SIGKILL inside a later round (also the end-to-end run of method=lth)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY, run_cli
from sparse_exp import experiment
from sparse_exp.errors import ConfigError
from sparse_exp.methods.lth import detached_copy
from sparse_exp.sparsity.schedules import lth_kept_counts, lth_trainings
from sparse_exp.tracking.files import load_torch
from test_dst import _metrics, build_session


@pytest.mark.parametrize("q", [0.1, 0.2 - 1e-3, 0.5, 0.8, 0.9, 0.95, 0.977, 0.99, 0.995])
def test_round_count_follows_eq_a75_and_final_count_is_exact(q):
    D = 1_234_567
    counts = lth_kept_counts(D, q)
    k = 1 + math.ceil(math.log(1 - q) / (math.log(4) - math.log(5)))  # eq. A.75
    assert 1 + len(counts) == k == lth_trainings(q)
    assert counts[-1] == math.floor((1 - q) * D)
    assert all(a > b for a, b in zip([D, *counts], counts))
    for r, kept in enumerate(counts[:-1], start=1):  # 20% of the remaining weights per round
        assert kept == math.floor(0.8**r * D)


def test_exact_levels_and_no_pruning():
    D = 1_000_000
    assert lth_kept_counts(D, 0.0) == [] and lth_trainings(0.0) == 1
    assert lth_kept_counts(D, 0.2) == [800_000] and lth_trainings(0.2) == 2
    assert lth_kept_counts(D, 0.36) == [800_000, 640_000] and lth_trainings(0.36) == 3


def test_unreachable_compression_with_dense_classifier_is_a_config_error(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=lth", "method.compression=0.995")  # fc2 has 5,000 of 430,500
    with pytest.raises(ConfigError, match="method.compression=0.995 is unreachable"):
        session.method.make_plan(session)
    ok = build_session(make_cfg, tmp_path, "method=lth", "method.compression=0.995", "method.dense_classifier=false")
    assert ok.method.make_plan(ok)[-1] == math.floor(0.005 * 430_500)


def test_rounds_rewind_to_iteration_t0_under_the_mask(make_cfg, tmp_path):
    # interspace (fine sharing): the filter bases are rewound too
    session = build_session(make_cfg, tmp_path, "method=lth", "method.compression=0.36", "method.rewind_step=3",
                            "trainer.epochs=1", "sharing=fine")
    method = session.method
    starts = {}
    train = session.train

    def spy(phase, epochs=None, start_state=None):
        starts[phase] = {"model": {k: v.clone() for k, v in session.model.state_dict().items()},
                         "mask": session.mask.clone(), "start": start_state,
                         "snapshot": detached_copy(method.rewind)}
        return train(phase, epochs, start_state)

    session.train = spy
    method.run(session)
    assert list(session.phases) == ["round0", "round1", "round2"]
    rewind = method.rewind
    assert rewind["trainer"]["step"] == 3 and any(k.startswith("fb_bases") for k in rewind["model"])
    cls = f"{session.model.classifier_name}.weight"
    for phase in ("round1", "round2"):
        s = starts[phase]
        assert s["start"]["step"] == 3 and "history" not in s["start"]
        for key, saved in rewind["model"].items():
            name = key
            if name in s["mask"].masks:  # prunable: the iteration-t0 values under the mask
                assert torch.equal(s["model"][key], saved * s["mask"].masks[name]), key
            else:  # bases, biases, BatchNorm statistics: exactly the iteration-t0 state
                assert torch.equal(s["model"][key], saved), key
        assert bool(s["mask"].masks[cls].all())  # the classifier stays dense
    # the stored snapshot is never modified by the rounds trained from it
    before = starts["round1"]["snapshot"]
    for part in ("model", "trainer"):
        flat_a, flat_b = _tensors(before[part]), _tensors(rewind[part])
        assert len(flat_a) == len(flat_b) > 0 and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b))
    D = session.mask.numel()
    assert session.mask.kept() == math.floor(0.64 * D)  # final density exactly 1 - q
    assert starts["round1"]["mask"].kept() == math.floor(0.8 * D)
    rounds = method.summary()["lth"]["rounds"]
    assert [r["kept"] for r in rounds] == [D, math.floor(0.8 * D), math.floor(0.64 * D)]
    # pruning is nested: a pruned weight never returns
    assert bool((session.mask.flat() <= starts["round1"]["mask"].flat()).all())


@pytest.mark.parametrize("rewind_step", [2, 3, 4])
def test_a_rewind_point_at_an_epoch_end_starts_the_next_epoch(make_cfg, tmp_path, rewind_step):
    """3 iterations an epoch: t0 = 3 ends epoch 1, so the later rounds start epoch 2 with all 3 of its batches
    (they used to resume epoch 1 with none left: 0 samples, a NaN loss, the round and the run "diverged")."""
    session = build_session(make_cfg, tmp_path, "method=lth", "model=lenet300", "method.compression=0.2",
                            f"method.rewind_step={rewind_step}", "trainer.epochs=2", "trainer.max_steps_per_epoch=3")
    session.method.run(session)
    rewind = session.method.rewind["trainer"]
    assert (rewind["step"], rewind["epoch"]) == (rewind_step, rewind_step // 3)
    rounds = session.method.summary()["lth"]["rounds"]
    assert [r["status"] for r in rounds] == ["completed"] * len(rounds) and len(rounds) == 2
    # round0 trains epochs 1-2; round1 starts at t0: inside epoch 1 (t0 = 2), at the start of epoch 2 (t0 = 3)
    # or inside epoch 2 (t0 = 4); both end at iteration 6
    first = {2: 1, 3: 2, 4: 2}[rewind_step]
    for phase, epochs in (("round0", [1, 2]), ("round1", list(range(first, 3)))):
        history = session.phases[phase].history
        assert [h["epoch"] for h in history] == epochs and history[-1]["step"] == 6


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


@pytest.mark.slow  # a killed process; tests/test_resume.py resumes LTH in-process in the fast suite
def test_resume_after_sigkill_inside_a_later_round_matches_uninterrupted_run(make_cfg, tmp_path):
    """Killed in round 2 of 3 and resumed (subprocesses: also the end-to-end run of method=lth); the
    uninterrupted reference runs in this process (experiment.run, the same code without the CLI)."""
    args = [*TINY, "method=lth", "method.compression=0.36", "method.rewind_step=5", "dataset.size=2000",
            "trainer.log_every=10"]
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "sparse_exp", *args, f"hydra.run.dir={killed}"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "killed.err", "w"))
    log, ckpt = killed / "run.log", killed / "checkpoint.pt"

    def inside_round2() -> bool:  # the checkpoint after round2's first epoch is on disk
        if "round2 epoch 1/2" not in (log.read_text() if log.exists() else ""):
            return False
        try:
            return load_torch(ckpt)["phase"] == "round2"
        except Exception:  # being replaced this very moment
            return False

    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline and not inside_round2():
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _metrics(killed)["status"] == "running", "the run finished before it could be killed: " + (tmp_path / "killed.err").read_text()
    assert load_torch(ckpt)["phase"] == "round2"

    resumed = run_cli([f"resume={killed}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "round2: resuming after epoch 1" in resumed.stdout
    b = _metrics(killed)
    assert b["status"] == "completed" and list(b["phases"]) == ["round0", "round1", "round2"]
    assert b["lth"]["trainings"] == 3 and b["compression"]["q"] == pytest.approx(0.36)
    assert [r["kept"] for r in b["lth"]["rounds"]] == [430_500, 344_400, 275_520]

    a = experiment.run(make_cfg(*args), tmp_path / "full")
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in h]
    assert strip(a["history"]) == strip(b["history"])
    assert (a["test_acc"], a["best_val_acc"], a["mask_sha256"]) == (b["test_acc"], b["best_val_acc"], b["mask_sha256"])
    assert a["lth"]["rounds"] == b["lth"]["rounds"]
    for phase in a["phases"]:
        assert {k: v for k, v in a["phases"][phase].items() if k != "train_s"} == \
               {k: v for k, v in b["phases"][phase].items() if k != "train_s"}
