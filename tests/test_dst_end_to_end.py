"""End-to-end runs (subprocess, tiny synthetic data) of the methods that change the mask during
training - SET, RigL, GMP - and of fine-tuning; LTH's end-to-end run is its resume test
(test_lth.py). SET and RigL share one multirun process; the three processes start together."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY
from sparse_exp.sparsity.schedules import drop_fraction

RUNS = {
    # one process, two jobs; choice(): a one-value sweep, applied per job (the default method has no such key)
    "dst": ["-m", "method=set,rigl", "method.update_every=choice(4)", "method.compression=choice(0.8)"],
    "gmp": ["method=gmp", "method.compression=0.9", "method.reference_batch_size=null", "method.begin_step=2",
            "method.end_step=12", "method.update_every=3"],
    "ft": ["method=ft", "method.compression=0.8", "method.finetune_epochs=1"],
}


def _command(args: list[str], run_dir) -> list[str]:
    flags = [a for a in args if a == "-m"]  # multirun goes first
    overrides = [a for a in args if a != "-m"]
    return [sys.executable, "-m", "sparse_exp", *flags, *TINY, *overrides, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> metrics.json of its finished run."""
    root = tmp_path_factory.mktemp("e2e")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    procs = {name: subprocess.Popen(_command(args, root / name), cwd=root, env=env, stdout=open(root / f"{name}.out", "w"), stderr=subprocess.STDOUT)
             for name, args in RUNS.items()}
    for name, proc in procs.items():
        assert proc.wait(timeout=300) == 0, f"{name}:\n{(root / f'{name}.out').read_text()}"
    read = lambda d: json.loads((d / "metrics.json").read_text())
    jobs = {read(d)["config"]["method"]["name"]: read(d) for d in (root / "dst").iterdir() if d.is_dir()}
    return {**jobs, "gmp": read(root / "gmp"), "ft": read(root / "ft")}


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_runs_end_to_end(runs, method):
    m = runs[method]
    assert m["status"] == "completed" and m["compression"]["q"] == pytest.approx(0.8)
    assert m["dst"]["updates"] == 3 and m["dst"]["last_step"] == 12  # steps 4, 8, 12 of 16
    assert m["dst"]["last_drop_fraction"] == pytest.approx(drop_fraction(12, 16))
    assert m["dst"]["exchanged"] > 0 and m["time"]["mask_s"] > 0
    assert sum(layer["kept"] for layer in m["layers"]) == 86_100


def test_gmp_runs_end_to_end(runs):
    m = runs["gmp"]
    assert m["status"] == "completed" and m["compression"]["q"] == pytest.approx(0.9)
    assert m["gmp"]["last_step"] == 12 and m["gmp"]["updates"] == 4  # 5, 8, 11, 12 (t0 = 2 prunes nothing)
    assert m["gmp"]["final_density"] == pytest.approx(0.1)


def test_ft_runs_end_to_end(runs):
    m = runs["ft"]
    assert m["status"] == "completed" and list(m["phases"]) == ["pretrain", "finetune"]
    assert m["phases"]["pretrain"]["steps"] == 16 and m["phases"]["finetune"]["steps"] == 8
    assert m["compression"]["q"] == pytest.approx(0.8) and m["ft"]["kept"] == 86_100
