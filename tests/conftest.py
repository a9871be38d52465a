"""Shared fixtures: composing configs the way Hydra does (Hydra's compose API, not the app)."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

import sparse_exp.cli as cli
from composed_configs import COMPOSED

REPO = Path(__file__).resolve().parent.parent

torch.set_num_threads(1)  # the suite runs beside other processes on 2 cores (2 threads collapse when the other core is busy)


# Composing is deterministic (the same overrides, the same config files) and costs ~0.2-0.5 s, most of a small
# end-to-end test: each distinct override list is composed once per process and every call gets its own deep
# copy (tests may change it). The cache lives in tests/composed_configs.py, which stays imported from one
# pytest.main to the next (this file does not).


@pytest.fixture(params=["compiled", "pytorch"])
def kernel_impl(request, monkeypatch):
    """Run a sparse-kernel test on the compiled kernels (kernels/native.c) and on PyTorch's CSR operations."""
    from sparse_exp.kernels import native

    if request.param == "pytorch":
        monkeypatch.setitem(native._state, "lib", None)
    elif native.lib() is None:
        pytest.skip("no C compiler: the compiled kernels are not built here")
    return request.param


@pytest.fixture
def make_cfg():
    """compose(overrides) -> the composed DictConfig, exactly as the CLI would build it."""
    cli._register_schemas()

    def _compose(*overrides: str):
        key = tuple(overrides)
        if key not in COMPOSED:
            with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
                COMPOSED[key] = compose(config_name="config", overrides=list(overrides))
        return copy.deepcopy(COMPOSED[key])

    return _compose


# Small, fast settings for end-to-end runs on synthetic data.
TINY = [
    "dataset=synthetic",
    "dataset.shape=[1,28,28]",
    "dataset.size=400",
    "dataset.test_size=100",
    "model=lenet5",
    "trainer.epochs=2",
    "trainer.batch_size=50",
    "trainer.eval_batch_size=200",
    "trainer.log_every=2",
    "trainer.threads=1",
    # auto picks kernels by timing, so two runs may differ in float rounding; tests compare runs bit for
    # bit (resume, SP = IP, DDP = one process). tests/test_sparse_kernels.py covers auto and on.
    "trainer.sparse_kernels=off",
]


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "sparse_exp", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def run_experiment(make_cfg, tmp_path):
    """Run one experiment in-process: run_experiment(*overrides, name="run") -> (metrics, run_dir)."""
    from sparse_exp import experiment

    def _run(*overrides: str, name: str = "run"):
        cfg = make_cfg(*TINY, *overrides)
        out = tmp_path / name
        return experiment.run(cfg, out), out

    return _run


def pytest_configure(config):
    # registered here (tests/ owns it): scripts/mutate.py deselects these from its COPS selection
    config.addinivalue_line("markers", "big: a test on 10^5+ entries whose code a fast twin in the same file covers; "
                                       "left out of the mutation check (scripts/mutate.py), run by the default suite")
