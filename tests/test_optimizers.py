"""Adam and AdamW keep the mask semantics of SGD (sparsity/enforce.py): pruned weights stay exactly
zero, frozen weights keep their bits (AdamW's decoupled decay included), FreezeNet-WD's frozen
weights shrink by exactly (1 - lr * wd) per step under AdamW; trained entries follow torch's own
optimizer step for step. And the cosine schedule with warm-up."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparse_exp.config.schema import TrainerConfig
from sparse_exp.errors import ConfigError
from sparse_exp.models import MODELS
from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.init import initialise
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.training.optim import build_optimizer
from sparse_exp.training.schedule import LRSchedule, schedule_from_config

LR, WD = 0.01, 0.1  # a large decay, so that a decay reaching frozen weights would show at once


def _setup(kind, mode, decay_frozen=False):
    model = MODELS.get("lenet5").build(10, (1, 28, 28))
    initialise(model, "xavier_normal", 0)
    params = prunable_parameters(model)
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in params.items()})
    enforcer = MaskEnforcer(params, mask, mode, WD, decay_frozen)
    opt = build_optimizer(model, enforcer, TrainerConfig(optimizer=kind, weight_decay=WD, lr=LR))
    enforcer.apply_(opt)
    return model, params, mask, enforcer, opt


def _steps(model, enforcer, opt, steps=8, record=None):
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(10, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if record is not None:  # the loss gradient of every prunable parameter, before masking
            record.append({n: p.grad.clone() for n, p in prunable_parameters(model).items()})
        enforcer.prepare_gradients()
        opt.step()


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_pruned_weights_stay_zero_and_trained_ones_follow_torch(kind):
    model, params, mask, enforcer, opt = _setup(kind, "prune")
    start = {n: p.detach().clone() for n, p in params.items()}
    grads = []
    _steps(model, enforcer, opt, record=grads)
    for n, p in params.items():
        keep = mask.masks[n]
        assert torch.count_nonzero(p.detach()[~keep]) == 0, n
        for buf in ("exp_avg", "exp_avg_sq"):
            assert torch.count_nonzero(opt.state[p][buf][~keep]) == 0, (n, buf)
        # independent reference: torch's optimizer on the kept entries alone, same gradients
        ref = torch.nn.Parameter(start[n][keep].clone())
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        ref_opt = cls([ref], lr=LR, weight_decay=WD)
        for g in grads:
            ref.grad = g[n][keep].clone()
            ref_opt.step()
        torch.testing.assert_close(p.detach()[keep], ref.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_frozen_weights_keep_their_bits(kind):
    model, params, mask, enforcer, opt = _setup(kind, "freeze")
    start = {n: p.detach().clone() for n, p in params.items()}
    _steps(model, enforcer, opt)
    for n, p in params.items():
        off = ~mask.masks[n]
        assert torch.equal(p.detach()[off], start[n][off]), n  # bit for bit, no decoupled decay either
        assert not torch.equal(p.detach()[~off], start[n][~off]), n


def test_adamw_freezenet_wd_shrinks_frozen_weights_by_the_decoupled_decay_only():
    model, params, mask, enforcer, opt = _setup("adamw", "freeze", decay_frozen=True)
    start = {n: p.detach().clone() for n, p in params.items()}
    steps = 8
    _steps(model, enforcer, opt, steps)
    for n, p in params.items():
        off = ~mask.masks[n]
        expected = start[n][off].clone()
        for _ in range(steps):
            expected = expected * (1.0 - LR * WD)
        torch.testing.assert_close(p.detach()[off], expected, rtol=1e-6, atol=0)
        assert not torch.equal(p.detach()[off], start[n][off])


def test_regrown_entries_start_with_zero_adam_state():
    model, params, mask, enforcer, opt = _setup("adam", "prune")
    _steps(model, enforcer, opt, steps=2)
    name = next(iter(params))
    grown = mask.masks[name].clone()
    flip = (~grown).nonzero()[0]
    grown[tuple(flip)] = True
    new = Mask({n: (grown if n == name else m.clone()) for n, m in mask.masks.items()})
    p = params[name]
    opt.state[p]["exp_avg"][tuple(flip)] = 1.0  # pretend stale state at the regrown entry
    enforcer.set_mask(new, opt)
    assert p.detach()[tuple(flip)] == 0
    assert opt.state[p]["exp_avg"][tuple(flip)] == 0 and opt.state[p]["exp_avg_sq"][tuple(flip)] == 0


def test_cosine_schedule_with_warmup_hand_values():
    s = LRSchedule(1.0, steps_per_epoch=10, warmup_epochs=1, cosine_steps=30)
    assert s.lr(0) == pytest.approx(0.1) and s.lr(9) == pytest.approx(1.0)  # linear warm-up
    assert s.lr(10) == pytest.approx(1.0) and s.lr(20) == pytest.approx(0.5) and s.lr(30) == pytest.approx(0.0)
    assert s.lr(15) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    floor = LRSchedule(1.0, steps_per_epoch=10, cosine_steps=20, min_lr=0.1)
    assert floor.lr(0) == pytest.approx(1.0) and floor.lr(10) == pytest.approx(0.55) and floor.lr(25) == pytest.approx(0.1)


def test_cosine_from_config_ends_with_the_training(make_cfg):
    cfg = make_cfg("trainer.lr_schedule=cosine", "trainer.lr_every_iters=null", "trainer.epochs=4")
    assert schedule_from_config(cfg.trainer, 5).lr(20) == pytest.approx(0.0)
    assert schedule_from_config(cfg.trainer, 5, total_steps=40).lr(20) == pytest.approx(0.05)  # a longer phase


@pytest.mark.parametrize("overrides, needle", [
    (["trainer.optimizer=adagrad"], "trainer.optimizer must be one of sgd, adam, adamw; got 'adagrad'"),
    (["trainer.betas=[0.9,1.5]"], "trainer.betas must be two numbers in [0, 1)"),
    (["trainer.lr_schedule=cosine"], "trainer.lr_schedule=cosine decays the rate itself; also set trainer.lr_milestones=[] and trainer.lr_every_iters=null"),
    (["trainer.lr_schedule=linear"], "trainer.lr_schedule must be one of step, cosine; got 'linear'"),
])
def test_bad_optimizer_settings_are_one_sentence(make_cfg, overrides, needle):
    from sparse_exp.config.validate import validate

    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert str(err.value).startswith(needle)


def test_adamw_freezenet_run_keeps_frozen_bits_end_to_end(run_experiment):
    from omegaconf import OmegaConf

    from sparse_exp.models.build import build_model
    from sparse_exp.tracking.files import load_torch

    metrics, run_dir = run_experiment("method=freezenet", "method.compression=0.9", "trainer.optimizer=adamw",
                                      "trainer.lr=0.001", "trainer.weight_decay=0.1", "trainer.lr_schedule=cosine",
                                      "trainer.lr_every_iters=null", "trainer.epochs=1", "trainer.max_steps_per_epoch=4")
    assert metrics["status"] == "completed"
    ckpt = load_torch(run_dir / "checkpoint.pt")
    init = build_model(OmegaConf.load(run_dir / "config.yaml"), 10, (1, 28, 28), metrics["init_seed"]).state_dict()
    for name, keep in ckpt["mask"].items():
        assert torch.equal(ckpt["model"][name][~keep], init[name][~keep]), name
        assert not torch.equal(ckpt["model"][name][keep], init[name][keep]), name
