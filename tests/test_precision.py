"""Mixed precision on the CPU (bf16 autocast; fp16 needs CUDA) and the training step's promise of
no host-device synchronisation between log steps."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from sparse_exp.data.tensor_source import TensorSource
from sparse_exp.errors import ConfigError

HOST_SYNCS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")


def test_bf16_trains_with_fp32_masks_scores_and_weights(run_experiment, monkeypatch):
    import sparse_exp.methods.set as dst

    seen = []
    original = dst.drop_and_grow

    def recording(params, mask, fraction, score):  # the RigL update: weights and |grad| scores
        seen.extend(p.dtype for p in params.values())
        seen.extend(score(n, p).dtype for n, p in params.items())
        seen.extend(m.dtype for m in mask.masks.values())
        return original(params, mask, fraction, score)

    monkeypatch.setattr(dst, "drop_and_grow", recording)
    extra = ["method=rigl", "method.update_every=3", "trainer.epochs=1"]
    bf16, run_dir = run_experiment(*extra, "trainer.precision=bf16", name="bf16")
    fp32, _ = run_experiment(*extra, name="fp32")
    # 8 steps (400 samples / 50), an update every 3 steps: at steps 3 and 6 (none at the last step)
    assert bf16["status"] == "completed" and bf16["dst"]["updates"] == fp32["dst"]["updates"] == 2
    assert len(seen) == 2 * 3 * 2 * 4  # two updates, 4 layers: weights, scores and masks, all recorded
    assert set(seen) == {torch.float32, torch.bool}  # masks bool, scores and weights fp32 under bf16
    a, b = bf16["history"][0]["train_loss"], fp32["history"][0]["train_loss"]
    assert a != b and abs(a - b) < 0.02 * b  # autocast was on, and bf16 rounding only moved the loss a little
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_initial_mask_does_not_depend_on_the_training_precision(run_experiment):
    a, _ = run_experiment("method=snip", "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.precision=bf16", name="a")
    b, _ = run_experiment("method=snip", "trainer.epochs=1", "trainer.max_steps_per_epoch=1", name="b")
    assert a["mask_sha256"] == b["mask_sha256"]


def test_fp16_needs_cuda(make_cfg):
    from sparse_exp.config.validate import validate

    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        validate(make_cfg("trainer.precision=fp16", "device=cpu"))


@pytest.mark.parametrize("extra", [["method=snip"], ["method=freezenet"], ["method=set"], ["method=dense", "trainer.precision=bf16"]])
def test_no_host_sync_between_log_steps(run_experiment, monkeypatch, extra):
    """Every Tensor -> Python conversion is counted while a non-logging training step runs (from
    handing out its batch to asking for the next); log steps and epoch ends may read metrics."""
    log_every = 4
    state = {"active": False, "calls": []}
    for name in HOST_SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if state["active"]:
                state["calls"].append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    original_epoch = TensorSource.epoch

    def epoch(self, e):
        if not self.shuffle:  # validation and test sets
            yield from original_epoch(self, e)
            return
        for k, batch in enumerate(original_epoch(self, e)):
            state["active"] = (k + 1) % log_every != 0  # steps_per_epoch is a multiple of log_every
            yield batch
            state["active"] = False

    monkeypatch.setattr(TensorSource, "epoch", epoch)
    m, _ = run_experiment(*extra, "trainer.epochs=2", f"trainer.log_every={log_every}", "trainer.batch_size=45")
    assert m["status"] == "completed" and len(m["history"]) == 2
    assert state["calls"] == []


@pytest.mark.slow  # `make bench` runs it too
def test_throughput_benchmark_runs_on_the_cpu():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_throughput.py"), "--quick", "--models", "lenet5",
                           "--methods", "dense,set", "--steps", "1", "--blocks", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["method"] for r in summary["results"]] == ["dense", "set"]
    assert all(r["samples_per_s"] > 0 and r["epoch_s"] > 0 for r in summary["results"])
    assert summary["paper_vgg16_cifar10_epoch_s"] == 23.7
