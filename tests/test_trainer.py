"""The trainer's reported numbers: the test accuracy of a run is the one at the epoch of the best
validation accuracy (early stopping; a tie keeps the earlier epoch), never the last epoch's or the best
test accuracy. Scripted validation/test accuracies are fed through the real training loop (the
evaluation pass is replaced, everything else runs), on a LeNet-5 with one step per epoch."""
from __future__ import annotations

import copy
import json
import sys

import pytest
import torch

import sparse_exp.training.trainer as trainer_module
from test_dst import build_session

# epoch:        1    2    3    4
VAL = [0.50, 0.70, 0.70, 0.60]  # best validation at epoch 2; epoch 3 ties it
TEST = [0.90, 0.20, 0.30, 0.40]  # best test (epoch 1), tie-later (3) and last (4) all differ from epoch 2's


FAST = ["model=lenet300", "trainer.epochs=4", "trainer.max_steps_per_epoch=1", "dataset.size=200", "dataset.test_size=60"]


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
    bests = []
    on_new_best = session.on_new_best
    session.on_new_best = lambda trainer: (bests.append(trainer), on_new_best(trainer))
    result = session.train()
    assert (seen["val"], seen["test"]) == (4, 4)
    assert len(bests) == 2 and all(t is session.last_trainer for t in bests)  # epochs 1 and 2; the tie is no new best
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
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST[3:], "model=lenet300", "trainer.epochs=4",
                            "trainer.max_steps_per_epoch=3", "trainer.lr=1e30")
    seen = _script(monkeypatch, session.data.val.num_samples)
    result = session.train()
    assert result.status == "diverged" and seen["val"] == 0 and result.best_epoch == -1
    assert result.best_val_acc != result.best_val_acc and result.test_acc != result.test_acc  # NaN
    assert result.final_train_acc != result.final_train_acc and result.final_val_acc != result.final_val_acc  # NaN
    assert result.final_test_acc != result.final_test_acc


@pytest.mark.parametrize("val,expected_epoch", [([0.1, 0.1, 0.1, 0.1], 1), ([0.0, 0.0, 0.0, 0.0], 1)])
def test_flat_validation_keeps_the_first_epoch(make_cfg, tmp_path, monkeypatch, val, expected_epoch):
    """Equal validation accuracies (0 included: a model at chance on a tiny split) keep epoch 1."""
    monkeypatch.setattr(sys.modules[__name__], "VAL", val)
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST)
    _script(monkeypatch, session.data.val.num_samples)
    result = session.train()
    assert result.best_epoch == expected_epoch and result.test_acc == TEST[expected_epoch - 1]


# the loop itself: steps, learning rates, hooks, running figures, checkpoints, state ----------------------
class Spy:
    """Records what the trainer tells a method, in order, wrapping the session's method."""

    def __init__(self, method):
        self.method, self.calls = method, []

    def __getattr__(self, name):
        return getattr(self.method, name)

    def after_backward(self, trainer, step):
        grads = [p.grad for p in trainer.model.parameters()]
        self.calls.append(("after_backward", step, trainer.step, trainer.lr, all(g is not None for g in grads)))

    def after_step(self, trainer, step):
        self.calls.append(("after_step", step, trainer.step, trainer.lr))

    def on_epoch_end(self, trainer, epoch):
        self.calls.append(("on_epoch_end", epoch, trainer.epoch, len(trainer.history)))


def test_steps_learning_rates_and_hooks(make_cfg, tmp_path):
    """2 epochs x 3 steps, lr 0.1 decayed x0.1 after 4 iterations: every update uses lr(step) of the
    schedule, the hooks see the step counts before/after the update, epochs end after their evaluation."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.lr_every_iters=4",
                            "trainer.log_every=1", "trainer.label_smoothing=0.1")
    spy = session.method = Spy(session.method)
    lrs = []
    original_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    first = next(session.model.parameters())
    fresh = []  # at each backward: no gradient left from the last step (zero_grad(set_to_none=True): no memset,
    first.register_hook(lambda g: fresh.append(first.grad is None))  # and a parameter a step skips is left alone)
    torch.optim.SGD.step = recording_step
    try:
        result = session.train()
    finally:
        torch.optim.SGD.step = original_step
    assert fresh == [True] * 6
    assert result.steps == 6 and [r["step"] for r in result.history] == [3, 6] and [r["epoch"] for r in result.history] == [1, 2]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])  # iterations 0..3 at lr0, 4 and 5 decayed
    assert [r["lr"] for r in result.history] == pytest.approx([0.1, 0.01])  # the rate of the next update
    backward = [c for c in spy.calls if c[0] == "after_backward"]
    after = [c for c in spy.calls if c[0] == "after_step"]
    assert [c[1] for c in backward] == [c[2] for c in backward] == list(range(6)) and all(c[4] for c in backward)
    assert [c[1] for c in after] == [c[2] for c in after] == list(range(1, 7))
    assert [c[3] for c in after] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01])  # lr already set for the next step
    assert [c for c in spy.calls if c[0] == "on_epoch_end"] == [("on_epoch_end", 0, 1, 1), ("on_epoch_end", 1, 2, 2)]
    kinds = [c[0] for c in spy.calls]
    assert kinds == (["after_backward", "after_step"] * 3 + ["on_epoch_end"]) * 2
    trainer = session.last_trainer
    assert trainer.criterion.label_smoothing == 0.1 and trainer.steps_per_epoch == 3 and trainer.total_steps == 6
    r = result.history[0]
    assert r["samples_per_s"] == pytest.approx(3 * 50 / r["seconds"]) and r["grad_l1_mean"] > 0 and r["grad_l1_std"] >= 0


class KernelSpy:
    """Stands in for the session's SparseKernels: records how the trainer brackets each step."""

    active = True

    def __init__(self, trainer_of):
        self.trainer_of, self.calls = trainer_of, []

    def begin_step(self, dense_weight_grad):
        self.calls.append(("begin", self.trainer_of().step, dense_weight_grad))

    def end_step(self):
        trainer = self.trainer_of()
        self.calls.append(("end", trainer.step, trainer.optimizer.state_dict()["state"] != {}))


def test_sparse_kernels_see_each_step_begin_and_end(make_cfg, tmp_path):
    """auto's whole-step trial (kernels/trial.py) times begin_step -> end_step: begin before the forward
    with the method's needs_dense_gradients for that step (RigL), end after the optimizer step."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200",
                            "trainer.epochs=1", "trainer.max_steps_per_epoch=4")
    spy = session.method = Spy(session.method)
    asked = []
    spy.needs_dense_gradients = lambda trainer, step: asked.append(trainer) or step % 3 == 0
    kernels = session.kernels = KernelSpy(lambda: session.last_trainer)
    original_init = trainer_module.Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        session.last_trainer = self

    trainer_module.Trainer.__init__ = init
    try:
        session.train()
    finally:
        trainer_module.Trainer.__init__ = original_init
    # ("end", step, momentum exists): after SGD's update of that step (its momentum buffers exist)
    assert kernels.calls == [("begin", 0, True), ("end", 0, True), ("begin", 1, False), ("end", 1, True),
                             ("begin", 2, False), ("end", 2, True), ("begin", 3, True), ("end", 3, True)]
    assert len(asked) == 4 and all(t is session.last_trainer for t in asked)  # RigL's end_step(trainer) reads it


def test_running_loss_and_accuracy_are_the_epochs_means(make_cfg, tmp_path):
    """train_loss / train_acc of an epoch: the mean of the per-step losses (weighted by batch size) and the
    fraction of correct predictions, recomputed here from the model's outputs during the steps."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=1", "trainer.log_every=3")  # 180 samples: batches 50, 50, 50, 30
    seen = []
    model = session.model
    handle = model.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()) if m.training else None)
    labels, asked = [], []
    original_epoch = session.data.train.epoch

    def epoch(e):
        asked.append(e)
        for x, y in original_epoch(e):
            labels.append(y.clone())
            yield x, y

    session.data.train.epoch = epoch
    result = session.train()
    handle.remove()
    outs, ys = seen[:4], labels[:4]
    assert asked == [0]  # epoch 0's order and augmentation
    assert [len(y) for y in ys] == [50, 50, 50, 30]
    loss = sum(float(torch.nn.functional.cross_entropy(o, y)) * len(y) for o, y in zip(outs, ys)) / sum(len(y) for y in ys)
    acc = sum(int((o.argmax(1) == y).sum()) for o, y in zip(outs, ys)) / sum(len(y) for y in ys)
    r = result.history[0]
    # summed in float64 (rel. error ~1e-16; float32 running sums would be off by ~1e-7)
    assert r["train_loss"] == pytest.approx(loss, rel=1e-12) and r["train_acc"] == acc
    assert result.final_train_acc == acc
    assert "grad_l1_mean" in r and r["grad_l1_std"] == 0.0  # one log step (step 3 of 4): one flow value


def test_mid_epoch_checkpoints_and_state_round_trip(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.checkpoint_every_steps=2")
    saves, full = [], {}
    session.save_checkpoint = lambda trainer=None, partial=None: (full.setdefault(trainer.step, partial), saves.append(
        (trainer.step, None if partial is None else {k: partial[k] for k in ("epoch", "samples")})))
    result = session.train()
    # at every epoch end (steps 3, 6), and 2 steps after the last checkpoint mid-epoch: steps 2 and 4 with the
    # running sums of their epoch so far (a save at step 6, just before the epoch end's, would be redundant but harmless)
    assert [s for s in saves if s[1] is None] == [(3, None), (6, None)]
    partial = [s for s in saves if s[1] is not None]
    assert partial[:2] == [(2, {"epoch": 0, "samples": 100}), (4, {"epoch": 1, "samples": 50})]
    assert all(step % 3 == 0 for step, _ in partial[2:])
    assert set(full[2]) == {"epoch", "loss_sum", "correct", "samples", "flow", "seconds"}
    assert full[2]["correct"].dtype == torch.int64 and full[2]["loss_sum"].dtype == torch.float64  # exact counts and sums
    trainer = session.last_trainer
    state = trainer.state_dict({"epoch": 1, "seconds": 2.5, "loss_sum": torch.tensor(1.0), "correct": torch.tensor(3),
                                "samples": 50, "flow": [1.0]})
    assert (state["step"], state["epoch"], state["phase"], state["best"]) == (6, 2, "train", trainer.best)
    assert state["history"] == result.history and state["train_s"] == trainer.train_s
    fresh = type(trainer)(session, "train", 2)
    fresh.load_state_dict(state)
    assert (fresh.step, fresh.epoch, fresh.best, fresh.train_s) == (6, 2, trainer.best, trainer.train_s)
    assert fresh.history == result.history and fresh.resumed_partial["samples"] == 50 and fresh.resumed_seconds == 2.5
    assert fresh.lr == pytest.approx(trainer.lr)
    for a, b in zip(fresh.optimizer.state.values(), trainer.optimizer.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert fresh.fit().steps == 6  # nothing left to train


def test_a_signal_finishes_the_step_checkpoints_and_stops(make_cfg, tmp_path):
    """A signal during a step (the guard's flag set) lets the step finish, writes a mid-epoch checkpoint
    with the epoch's running sums at that step, and raises Interrupted naming where it stopped."""
    import signal
    from types import SimpleNamespace

    from sparse_exp.training.interrupt import Interrupted

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200",
                            "dataset.test_size=60", "trainer.epochs=2", "trainer.max_steps_per_epoch=3")
    guard = session.interrupt = SimpleNamespace(deferred=False, received=None)
    spy = session.method = Spy(session.method)
    deferred = []
    original_after_step = spy.after_step

    def after_step(trainer, step):
        original_after_step(trainer, step)
        deferred.append(guard.deferred)
        if step == 5:
            guard.received = signal.SIGTERM

    spy.after_step = after_step
    saves = []
    session.save_checkpoint = lambda trainer=None, partial=None: saves.append((trainer.step, partial))
    import time

    t0 = time.perf_counter()
    with pytest.raises(Interrupted, match="interrupted by SIGTERM at epoch 2 step 5"):
        session.train()
    wall = time.perf_counter() - t0
    assert all(deferred) and guard.deferred is False  # deferred while training, released when it stopped
    assert [s for s, _ in saves] == [3, 5] and saves[0][1] is None
    assert saves[1][1]["epoch"] == 1 and saves[1][1]["samples"] == 100 and 0 < saves[1][1]["seconds"] < wall


# settings the trainer derives once, and a state without the optional keys --------------------------------
def test_cpu_settings_and_the_cosine_end(make_cfg, tmp_path):
    """On the CPU: channels_last is a CUDA-only layout (asked for, it stays off), the GradScaler is off for fp32
    (fp16 is CUDA-only), bf16 autocasts matmuls to bfloat16 and fp32 runs no autocast. The cosine schedule ends
    at the end of *this* trainer's epochs (an LTH or fine-tuning phase may run fewer than trainer.epochs)."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "dataset.shape=[3,8,8]", "trainer.epochs=4", "trainer.max_steps_per_epoch=2", "trainer.channels_last=true",
                            "trainer.lr_schedule=cosine", "trainer.lr_milestones=[]", "trainer.lr_every_iters=null",
                            "trainer.lr=0.1")
    trainer = trainer_module.Trainer(session, "ft", 1)
    assert trainer.channels_last is False and trainer.scaler.is_enabled() is False
    x = torch.ones(2, 3)
    with trainer.autocast():
        assert torch.nn.functional.linear(x, torch.ones(4, 3)).dtype == torch.float32
    trainer.precision = "bf16"
    with trainer.autocast():
        assert torch.nn.functional.linear(x, torch.ones(4, 3)).dtype == torch.bfloat16
    assert trainer.total_steps == 2 and trainer.lr == 0.1
    assert trainer.schedule.lr(1) == pytest.approx(0.05) and trainer.schedule.lr(2) == 0.0  # half way, end
    layouts = []  # and the 3-channel image batches reach the model as they are (NCHW), not converted
    session.model.register_forward_pre_hook(lambda m, args: layouts.append((args[0].dim(), args[0].is_contiguous()))
                                            if m.training else None)
    trainer.precision = "fp32"
    trainer.fit()
    assert layouts == [(4, True), (4, True)]


def test_a_state_without_the_optional_keys_and_the_seconds(make_cfg, tmp_path):
    """load_state_dict of a state holding only step, epoch, optimizer and scaler (the rest has defaults: no
    history, the current best, no time, no partial epoch); a fresh trainer's seconds are its own: the epochs'
    times add up to train_s and fit at most the wall time."""
    import time

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=2")
    trainer = trainer_module.Trainer(session, "train", 2)
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    seconds = [r["seconds"] for r in result.history]
    assert result.train_s == pytest.approx(sum(seconds)) and sum(seconds) <= wall
    fresh = trainer_module.Trainer(session, "train", 2)
    best = dict(fresh.best)
    fresh.load_state_dict({"step": 2, "epoch": 1, "optimizer": trainer.optimizer.state_dict(), "scaler": trainer.scaler.state_dict()})
    assert (fresh.step, fresh.epoch, fresh.history, fresh.train_s) == (2, 1, [], 0.0)
    assert fresh.best == best and fresh.resumed_partial is None and fresh.resumed_seconds == 0.0
    assert fresh.fit().steps == 4 and len(fresh.history) == 1  # the second epoch, from step 2


def test_loading_a_dense_state_into_a_pruned_model(make_cfg, tmp_path):
    """An LTH rewind point is saved while dense and loaded under a mask: the optimizer's decay is re-derived for
    the mask mode (the masked parameters' group without optimizer decay, the others with trainer.weight_decay)
    and the momentum of masked entries is zeroed."""
    from sparse_exp.sparsity.mask import Mask

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "trainer.weight_decay=0.01")
    dense = trainer_module.Trainer(session, "train", 1)
    dense.fit()
    state = dense.state_dict()
    g = torch.Generator().manual_seed(0)
    session.set_mask(Mask({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in session.params.items()}), "prune")
    pruned = trainer_module.Trainer(session, "train", 1)
    pruned.load_state_dict(state)
    decay = {g["role"]: g["weight_decay"] for g in pruned.optimizer.param_groups}
    assert decay["prunable"] == 0.0 and decay["decay"] == 0.01
    for n, p in session.params.items():
        buf = pruned.optimizer.state[p]["momentum_buffer"]
        assert bool((buf[~session.mask.masks[n]] == 0).all()) and bool((buf[session.mask.masks[n]] != 0).any()), n


def test_evaluation_arguments_records_and_the_result_of_a_phase(make_cfg, tmp_path, monkeypatch):
    """Both evaluations get the trainer's device and its autocast (bf16 runs evaluate in bf16 too); each epoch's
    record carries both losses; the result names its phase, and a best epoch 1 reports its validation accuracy.
    A validation set of one sample selects like any other (only an empty one makes every epoch the best)."""
    monkeypatch.setattr(sys.modules[__name__], "VAL", [0.9, 0.5, 0.5, 0.5])
    session = build_session(make_cfg, tmp_path, "method=dense", *FAST, "dataset.val_fraction=0.005")
    assert session.data.val.num_samples == 1
    calls = []
    original = _script(monkeypatch, 1)
    scripted = trainer_module.evaluate

    def recording(model, source, device, autocast=None):
        calls.append((device, autocast))
        return scripted(model, source, device, autocast)

    monkeypatch.setattr(trainer_module, "evaluate", recording)
    result = session.train("ft")
    trainer = session.last_trainer
    assert len(calls) == 8 and all(d == trainer.device and a == trainer.autocast for d, a in calls)
    assert [(r["val_loss"], r["test_loss"]) for r in result.history] == [(1 - v, 1 - t) for v, t in zip(VAL, TEST)]
    assert result.phase == "ft" and original["val"] == 4
    assert (result.best_epoch, result.best_val_acc, result.test_acc) == (1, 0.9, 0.9)


def test_a_resumed_epoch_counts_the_seconds_before_the_cut(make_cfg, tmp_path):
    """A mid-epoch checkpoint stores the seconds the cut epoch had run; resumed, that epoch's time includes them."""

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.checkpoint_every_steps=4")
    saved = {}
    session.save_checkpoint = lambda trainer=None, partial=None: saved.setdefault(
        trainer.step, copy.deepcopy(trainer.state_dict(partial)))
    session.train()
    state = saved[4]  # step 4 of 6: one step into epoch 2
    assert state["partial"]["epoch"] == 1 and state["epoch"] == 1
    state["partial"]["seconds"] = 100.0  # as if the cut epoch had run 100 s before the checkpoint
    state["partial"]["loss_sum"] = torch.tensor(1e6, dtype=torch.float64)  # and its first step had lost 1e6 in all
    fresh = trainer_module.Trainer(session, "train", 2)
    fresh.load_state_dict(state)
    result = fresh.fit()
    assert result.steps == 6 and len(result.history) == 2 and result.history[-1]["seconds"] >= 100.0
    assert result.history[-1]["train_loss"] >= 1e6 / 150  # the cut epoch's running sums count: 150 samples in all


def test_a_resumed_epoch_continues_exactly_and_leaves_the_checkpoint_alone(make_cfg, tmp_path):
    """Resumed from a mid-epoch checkpoint (model, optimizer and the cut epoch's running sums at step 4 of 6),
    the epoch ends with the uninterrupted run's train loss and accuracy; the loaded state is not changed."""

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.checkpoint_every_steps=4")
    saved = {}
    session.save_checkpoint = lambda trainer=None, partial=None: saved.setdefault(
        trainer.step, (copy.deepcopy(trainer.state_dict(partial)), copy.deepcopy(session.model.state_dict())))
    whole = session.train()
    state, weights = saved[4]
    before = copy.deepcopy(state["partial"])
    assert before["samples"] == 50 and int(before["correct"]) > 0  # one step of epoch 2 counted
    session.model.load_state_dict(weights)
    fresh = trainer_module.Trainer(session, "train", 2)
    fresh.load_state_dict(state)
    resumed = fresh.fit()
    assert resumed.history[-1]["train_acc"] == whole.history[-1]["train_acc"]
    assert resumed.history[-1]["train_loss"] == pytest.approx(whole.history[-1]["train_loss"], rel=1e-12)
    assert all(torch.equal(state["partial"][k], before[k]) for k in ("loss_sum", "correct"))  # summed into new tensors


def test_log_steps_report_the_running_loss_the_rate_probes_and_progress(make_cfg, tmp_path):
    """Every log_every-th step (3rd and 6th of 6) the scalars carry the running mean loss of the epoch so far,
    the next step's rate and each probe's values (the probe gets the trainer); the gradient flow of those steps
    gives grad_l1_mean / std in float64. The progress line gets the epoch's start, every step, the running loss."""
    import statistics

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=400", "dataset.test_size=60",
                            "trainer.epochs=1", "trainer.max_steps_per_epoch=6", "trainer.log_every=3")
    logged, flow, losses = [], [], []
    session.scalars = lambda values, step: logged.append((step, dict(values)))
    trained_grad_l1 = session.enforcer.trained_grad_l1
    session.enforcer.trained_grad_l1 = lambda: flow.append(trained_grad_l1()) or flow[-1]
    trainer = trainer_module.Trainer(session, "train", 1, probes=[lambda t: {"probe/step": t.step, "probe/same": t is trainer}])
    criterion = trainer.criterion

    def counted(out, y):
        loss = criterion(out, y)
        losses.append((float(loss.detach()), len(y)))
        return loss

    trainer.criterion = counted

    class ProgressSpy:
        loss = None

        def __init__(self):
            self.calls = []

        def start_epoch(self, epoch, step):
            self.calls.append(("start", epoch, step))

        def update(self, step):
            self.calls.append(("update", step, self.loss))

        def end_epoch(self):
            self.calls.append(("end",))

    progress = trainer.progress = ProgressSpy()
    result = trainer.fit()

    def running(n):  # the mean loss of the first n steps, weighted by batch size
        return sum(loss * size for loss, size in losses[:n]) / sum(size for _, size in losses[:n])

    logged = [(step, values) for step, values in logged if "probe/step" in values]  # not the epoch's record
    assert [step for step, _ in logged] == [3, 6] and len(losses) == 6 and len(flow) == 2
    for (step, values), lr in zip(logged, (trainer.schedule.lr(3), trainer.schedule.lr(6))):
        assert values == {"train/loss_running": pytest.approx(running(step), rel=1e-12), "lr": lr,
                          "probe/step": step, "probe/same": True}
    r = result.history[0]
    assert r["grad_l1_mean"] == pytest.approx(statistics.fmean(flow), rel=1e-12)
    assert r["grad_l1_std"] == pytest.approx(statistics.stdev(flow), rel=1e-12) and r["grad_l1_std"] > 0
    assert progress.calls == [("start", 0, 0), ("update", 1, None), ("update", 2, None),
                              ("update", 3, pytest.approx(running(3), rel=1e-12)), ("update", 4, pytest.approx(running(3), rel=1e-12)),
                              ("update", 5, pytest.approx(running(3), rel=1e-12)), ("update", 6, pytest.approx(running(6), rel=1e-12)),
                              ("end",)]


def test_each_rank_scales_its_loss_by_its_share_of_the_global_batch(make_cfg, tmp_path, monkeypatch):
    """Under torchrun (here a world of 2 faked around one process) the step's backward runs on the mean loss
    times distributed.batch_share(this rank's batch, the batch's index in the epoch, train samples, batch size),
    the loss itself where the share is 1; after each epoch's steps the model's buffers are synced."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2")  # 180 training samples: batches 50, 50, 50, 30
    shares = iter([1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 4.0, 1.0])
    asked, synced, losses, backward = [], [], [], []
    monkeypatch.setattr(trainer_module.distributed, "batch_share", lambda *args: asked.append(args) or next(shares))
    monkeypatch.setattr(trainer_module.distributed, "sync_buffers", synced.append)
    trainer = trainer_module.Trainer(session, "train", 2)
    trainer.world = 2
    criterion, scale = trainer.criterion, trainer.scaler.scale
    trainer.criterion = lambda out, y: losses.append(criterion(out, y)) or losses[-1]
    trainer.scaler.scale = lambda loss: backward.append(loss) or scale(loss)
    trainer.fit()
    assert asked == [(50, 0, 180, 50), (50, 1, 180, 50), (50, 2, 180, 50), (30, 3, 180, 50)] * 2
    for loss, used, share in zip(losses, backward, [1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 4.0, 1.0], strict=True):
        assert used is loss if share == 1.0 else torch.equal(used, loss * share)
    assert synced == [session.model, session.model]


def test_an_epoch_the_clock_did_not_see_has_no_rate(make_cfg, tmp_path, monkeypatch):
    """samples_per_s of an epoch whose time reads 0 (a coarse clock) is NaN, not a division by zero."""
    from types import SimpleNamespace

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=1", "trainer.max_steps_per_epoch=1")
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: 1000.0))
    result = trainer_module.Trainer(session, "train", 1).fit()
    r = result.history[0]
    assert r["seconds"] == 0.0 and r["samples_per_s"] != r["samples_per_s"] and result.train_s == 0.0


def test_checkpoints_every_so_many_minutes(make_cfg, tmp_path, monkeypatch):
    """trainer.checkpoint_every_min: a mid-epoch checkpoint is due once that many minutes have passed since the
    last one (30 s for 0.5), not before; without it (or checkpoint_every_steps) none is."""
    from types import SimpleNamespace

    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60")
    trainer = trainer_module.Trainer(session, "train", 1)
    clock = SimpleNamespace(perf_counter=lambda: 0.0)
    monkeypatch.setattr(trainer_module, "time", clock)
    trainer.tcfg.checkpoint_every_steps, trainer.tcfg.checkpoint_every_min = 0, 0.5
    trainer._last_checkpoint = (trainer.step, 1000.0)
    due = {}
    for now in (1000.0, 1029.5, 1030.0, 1031.0):
        clock.perf_counter = lambda now=now: now
        due[now] = trainer._checkpoint_due()
    assert due == {1000.0: False, 1029.5: False, 1030.0: True, 1031.0: True}
    trainer.tcfg.checkpoint_every_min = 0
    assert trainer._checkpoint_due() is False


def test_an_epoch_without_batches_left_has_no_means(make_cfg, tmp_path):
    """A state at the last step of an epoch without its running sums (an LTH rewind point captured at an epoch's
    end) leaves that epoch no batch: its loss and accuracy are NaN over 0 samples, not a division by zero."""
    session = build_session(make_cfg, tmp_path, "method=dense", "model=lenet300", "dataset.size=200", "dataset.test_size=60",
                            "trainer.epochs=2", "trainer.max_steps_per_epoch=3")
    trainer = trainer_module.Trainer(session, "train", 2)
    trainer.step = 3  # epoch 0's three steps done, trainer.epoch still 0
    train = trainer.train_epoch(0)
    assert train["samples"] == 0 and train["loss"] != train["loss"] and train["acc"] != train["acc"]
    assert trainer.step == 3 and train["extra"] == {}
