"""Resume in one process for the methods whose state changes during training (SET, RigL, GMP, FT, COPS;
LTH: test_lth.py): a run is cut right after its n-th checkpoint (as if killed: nothing after the
checkpoint reaches the disk), resumed with `resume=<run dir>`, and must end exactly as the
uninterrupted run - every epoch's figures, the reported accuracies, the mask and the method's record."""
from __future__ import annotations

import logging

import pytest

from sparse_exp import experiment
from sparse_exp.tracking.files import load_torch
from sparse_exp.training.session import Session
from test_dst import _metrics

from conftest import TINY


class Killed(BaseException):
    """Not an Exception: experiment.run must not get to write anything after the checkpoint."""


# 2 epochs x 6 steps, a mid-epoch checkpoint every 4 steps: checkpoints after steps 4, 6 (epoch end), 8, 12.
COMMON = ["model=lenet300", "trainer.epochs=2", "trainer.max_steps_per_epoch=6", "trainer.checkpoint_every_steps=4"]
CASES = {
    # (overrides, cut after this checkpoint, the phase and step it is in)
    "set": (["method=set", "method.update_every=3"], 1, ("train", 4)),  # after the update at step 3, mid-epoch
    "rigl": (["method=rigl", "method.update_every=3"], 3, ("train", 8)),  # in epoch 2, after 2 updates
    "gmp": (["method=gmp", "method.reference_batch_size=null", "method.begin_step=2", "method.end_step=10",
             "method.update_every=2"], 3, ("train", 8)),  # half-way through the pruning schedule
    "ft_after_pretraining": (["method=ft", "method.pretrain_epochs=1", "method.finetune_epochs=2"], 2,
                             ("pretrain", 6)),  # pre-training done, not yet pruned
    "ft_finetuning": (["method=ft", "method.pretrain_epochs=1", "method.finetune_epochs=2"], 4,
                      ("finetune", 6)),  # end of the first fine-tuning epoch
    "g_cops": (["method=g_cops", "method.compression=0.9", "method.score_batches=2"], 2, ("train", 6)),
}
SUMMARY = {"set": "dst", "rigl": "dst", "gmp": "gmp", "ft_after_pretraining": "ft", "ft_finetuning": "ft", "g_cops": "cops"}


def _strip(history):
    return [{k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in history]


@pytest.mark.parametrize("case", list(CASES))
def test_cut_and_resumed_run_equals_the_uninterrupted_run(make_cfg, tmp_path, monkeypatch, caplog, case):
    overrides, cut_after, (phase, step) = CASES[case]
    args = [*TINY, *COMMON, *overrides]
    full = experiment.run(make_cfg(*args), tmp_path / "full")

    cut = tmp_path / "cut"
    original = Session.save_checkpoint
    saved = {"n": 0}

    def save_then_die(self, trainer=None, partial=None):
        original(self, trainer, partial)
        saved["n"] += 1
        if saved["n"] == cut_after:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(Session, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            experiment.run(make_cfg(*args), cut)
    state = load_torch(cut / "checkpoint.pt")
    assert (state["phase"], state["trainer"]["step"]) == (phase, step)
    assert _metrics(cut)["status"] == "running"

    caplog.set_level(logging.INFO, logger="sparse_exp")
    resumed = experiment.run(make_cfg(*args, f"resume={cut}"), cut)
    assert f"{phase}: resuming after epoch" in caplog.text
    assert resumed["status"] == full["status"] == "completed"
    assert _strip(resumed["history"]) == _strip(full["history"])
    for key in ("test_acc", "best_val_acc", "best_epoch", "final_test_acc", "mask_sha256", "params", "compression"):
        assert resumed[key] == full[key], key
    summary = SUMMARY[case]
    untimed = lambda d: {k: v for k, v in d.items() if not k.endswith("_s")}  # scores_s, solver_s: wall times
    assert untimed(resumed[summary]) == untimed(full[summary]) and len(untimed(full[summary])) >= 2
    for name in full.get("phases", {}):
        assert {k: v for k, v in resumed["phases"][name].items() if k != "train_s"} == \
               {k: v for k, v in full["phases"][name].items() if k != "train_s"}, name
