"""Fine-tuning (IP appendix G.6): one-shot global magnitude pruning of the pre-trained network and
fine-tuning that restarts the dense schedule at its first learning rate; loading a pre-trained run
safely (weights only, architecture checked). End-to-end run: test_dst_end_to_end.py."""
from __future__ import annotations

import math

import pytest
import torch

from sparse_exp.errors import ConfigError
from sparse_exp.sparsity.select import global_mask
from sparse_exp.training.schedule import schedule_from_config
from test_dst import build_session


def _spy(session):
    """Record the LR and optimizer state size of each phase's steps, and the model at each phase start."""
    lrs, starts = {}, {}

    def after_backward(trainer, step):
        lrs.setdefault(trainer.phase, []).append((trainer.lr, len(trainer.optimizer.state)))

    train = session.train

    def spy_train(phase, epochs=None, start_state=None):
        starts[phase] = {n: p.detach().clone() for n, p in session.params.items()}
        return train(phase, epochs, start_state)

    session.method.after_backward = after_backward
    session.train = spy_train
    return lrs, starts


def test_finetuning_restarts_the_dense_schedule_at_its_first_learning_rate(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=ft", "method.compression=0.8",
                            "trainer.lr_milestones=[1]", "trainer.warmup_epochs=0.25")
    lrs, starts = _spy(session)
    session.method.run(session)
    assert list(session.phases) == ["pretrain", "finetune"]
    first = schedule_from_config(session.cfg.trainer, 8).lr(0)
    assert first == pytest.approx(0.1 * 1 / 2)  # warm-up over 2 iterations
    assert lrs["pretrain"][0][0] == pytest.approx(first) and lrs["pretrain"][-1][0] == pytest.approx(0.01)
    assert lrs["finetune"][0] == (pytest.approx(first), 0)  # the first LR again, fresh momentum
    assert lrs["finetune"][-1][0] == pytest.approx(0.01)
    # one-shot global magnitude pruning of the pre-trained weights
    D = session.mask.numel()
    expected = global_mask({n: w.abs() for n, w in starts["finetune"].items()}, math.floor(0.2 * D))
    assert session.mask.equal(expected) and session.mask.kept() == math.floor(0.2 * D)
    assert session.method.summary()["ft"]["pretrained"] == "pretrain phase"


def test_pretrained_run_dir_is_loaded_weights_only_and_checked(make_cfg, tmp_path):
    source = build_session(make_cfg, tmp_path, "method=dense", "seed=7")
    run_dir = tmp_path / "pretrained_run"
    run_dir.mkdir()
    torch.save({"model": source.model.state_dict(), "mask_mode": "dense", "phases": {}}, run_dir / "checkpoint.pt")

    session = build_session(make_cfg, tmp_path, "method=ft", f"method.pretrained={run_dir}", "trainer.epochs=1")
    lrs, starts = _spy(session)
    session.method.run(session)
    assert list(session.phases) == ["finetune"]
    for n, p in source.params.items():  # fine-tuning started from the loaded weights under the mask
        assert torch.equal(starts["finetune"][n], p.detach() * session.mask.masks[n]), n
    assert session.method.summary()["ft"]["pretrained"] == str((run_dir / "checkpoint.pt").absolute())

    wrong = build_session(make_cfg, tmp_path, "method=ft", f"method.pretrained={run_dir}", "model=lenet300")
    with pytest.raises(ConfigError, match="method.pretrained: .* does not fit the configured model"):
        wrong.method.run(wrong)


class _NotWeights:
    pass


def test_pretrained_file_with_pickled_code_is_refused(make_cfg, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model": _NotWeights()}, evil)
    session = build_session(make_cfg, tmp_path, "method=ft", f"method.pretrained={evil}")
    with pytest.raises(ConfigError, match="weights-only"):
        session.method.run(session)
    with pytest.raises(ConfigError, match="method.pretrained"):
        build_session(make_cfg, tmp_path, "method=ft", f"method.pretrained={tmp_path / 'missing'}")
