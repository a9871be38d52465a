"""The trainer's reported numbers: the test accuracy of a run is the one at the epoch of the best
validation accuracy (early stopping; a tie keeps the earlier epoch), never the last epoch's or the best
test accuracy. Scripted validation/test accuracies are fed through the real training loop (the
evaluation pass is replaced, everything else runs), on a LeNet-5 with one step per epoch."""
from __future__ import annotations

import json
import sys

import pytest
import torch

import sparse_exp.training.trainer as trainer_module
from test_dst import build_session

# epoch:        1    2    3    4
VAL = [0.50, 0.70, 0.70, 0.60]  # best validation at epoch 2; epoch 3 ties it
TEST = [0.90, 0.20, 0.30, 0.40]  # best test (epoch 1), tie-later (3) and last (4) all differ from epoch 2's
FAST = ["trainer.epochs=4", "trainer.max_steps_per_epoch=1", "dataset.size=200", "dataset.test_size=60"]


def _script(monkeypatch, val_samples: int):
    """Replace the evaluation pass: the validation loader (`val_samples` samples) returns VAL, the
    test loader TEST, epoch by epoch; the model's weights at each validation call are recorded."""
    seen = {"val": 0, "test": 0, "weights": []}

    def scripted(model, source, device, autocast=None):
        split = "val" if source.num_samples == val_samples else "test"
        epoch = seen[split]
        seen[split] += 1
        if split == "val":
            seen["weights"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return 1.0 - VAL[epoch], VAL[epoch]
        return 1.0 - TEST[epoch], TEST[epoch]

    monkeypatch.setattr(trainer_module, "evaluate", scripted)
    return seen


def test_reported_test_accuracy_is_the_best_validation_epochs(make_cfg, tmp_path, monkeypatch):
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST)
    assert session.data.val.num_samples != session.data.test.num_samples
    seen = _script(monkeypatch, session.data.val.num_samples)
    result = session.train()
    assert (seen["val"], seen["test"]) == (4, 4)
    assert result.best_epoch == 2 and result.best_val_acc == 0.70 and result.test_acc == 0.20
    assert (result.final_val_acc, result.final_test_acc) == (0.60, 0.40)
    assert [r["test_acc"] for r in result.history] == TEST and [r["val_acc"] for r in result.history] == VAL
    # the exported (early-stopping) model is the one evaluated at epoch 2, not a later one
    best = seen["weights"][1]
    assert set(session.best_state) == set(best)
    assert all(torch.equal(session.best_state[k], best[k]) for k in best)
    assert not all(torch.equal(seen["weights"][2][k], best[k]) for k in best)  # the model did move after epoch 2


def test_headline_number_in_metrics_json(run_experiment, make_cfg, tmp_path, monkeypatch):
    """The run's metrics.json (what reports and tables read) carries epoch 2's test accuracy."""
    probe = build_session(make_cfg, tmp_path / "probe", "method=dense", *FAST)
    _script(monkeypatch, probe.data.val.num_samples)
    metrics, run_dir = run_experiment("method=dense", *FAST)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    for m in (metrics, on_disk):
        assert m["status"] == "completed"
        assert (m["test_acc"], m["best_val_acc"], m["best_epoch"]) == (0.20, 0.70, 2)
        assert m["final_test_acc"] == 0.40


def test_no_epoch_means_no_best(make_cfg, tmp_path, monkeypatch):
    """A training that diverges in its first epoch has no best epoch: its accuracies are NaN, not 0 or -1."""
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST[2:], "trainer.epochs=4",
                            "trainer.max_steps_per_epoch=3", "trainer.lr=1e30")
    seen = _script(monkeypatch, session.data.val.num_samples)
    result = session.train()
    assert result.status == "diverged" and seen["val"] == 0 and result.best_epoch == -1
    assert result.best_val_acc != result.best_val_acc and result.test_acc != result.test_acc  # NaN


@pytest.mark.parametrize("val,expected_epoch", [([0.1, 0.1, 0.1, 0.1], 1), ([0.0, 0.0, 0.0, 0.0], 1)])
def test_flat_validation_keeps_the_first_epoch(make_cfg, tmp_path, monkeypatch, val, expected_epoch):
    """Equal validation accuracies (0 included: a model at chance on a tiny split) keep epoch 1."""
    monkeypatch.setattr(sys.modules[__name__], "VAL", val)
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST)
    _script(monkeypatch, session.data.val.num_samples)
    result = session.train()
    assert result.best_epoch == expected_epoch and result.test_acc == TEST[expected_epoch - 1]
