"""SET and RigL (IP appendix G.3): ERK densities and eps (eq. A.76), the cosine drop schedule
(eq. A.77), per-layer counts through an update, RigL's gradient regrowth on a hand-made example,
regrown weights at zero with zero momentum and free hooks between updates (end-to-end runs of
SET, RigL, GMP and FT: test_dst_end_to_end.py; of LTH: test_lth.py).

`build_session` / `manual_step` are shared with test_lth.py, test_gmp.py and test_ft.py."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import TINY
from sparse_exp.config.validate import validate
from sparse_exp.data import DATASETS
from sparse_exp.models.build import build_model, init_seed_of
from sparse_exp.methods import METHODS
from sparse_exp.sparsity.budgets import erk_counts, erk_densities, erk_ratio
from sparse_exp.sparsity.dst import drop_and_grow, erk_random_mask
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.schedules import drop_fraction
from sparse_exp.tracking.tensorboard import Tracker
from sparse_exp.training.session import Session
from sparse_exp.training.trainer import Trainer


# helpers shared by the method tests -------------------------------------------------------------
def build_session(make_cfg, out_dir, *overrides):
    """A Session assembled like experiment.run does, without files or TensorBoard."""
    cfg = make_cfg(*TINY, *overrides)
    validate(cfg)
    device = torch.device("cpu")
    data = DATASETS.get(cfg.dataset.name)(cfg.dataset, batch_size=cfg.trainer.batch_size,
                                          eval_batch_size=cfg.trainer.eval_batch_size, seed=cfg.seed, device=device)
    init_seed = init_seed_of(cfg)
    model = build_model(cfg, data.num_classes, data.input_shape, init_seed)
    method = METHODS.get(cfg.method.name)(cfg.method)
    return Session(cfg, out_dir, device, model, data, method, Tracker(out_dir, enabled=False), init_seed, None, is_writer=False)


def manual_step(trainer: Trainer, batch) -> None:
    """The body of Trainer.train_epoch for one batch, hooks included."""
    x, y = batch
    loss = trainer.criterion(trainer.model(x), y)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.method.after_backward(trainer, trainer.step)
    trainer.enforcer.prepare_gradients()
    trainer.optimizer.step()
    trainer.step += 1
    trainer._set_lr()
    trainer.method.after_step(trainer, trainer.step)


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


# ERK (eq. A.76) ---------------------------------------------------------------------------------
def _shapes():
    # conv 3x3 layers, interspace coefficients (c_out x c_in x n#) and a linear classifier
    return {"conv1": torch.empty(64, 3, 3, 3), "conv2": torch.empty(128, 64, 3, 3),
            "coeff": torch.empty(256, 128, 9), "fc": torch.empty(10, 256)}


def test_erk_densities_follow_eq_a76_with_eps_solved_for_the_global_density():
    params = _shapes()
    D = sum(p.numel() for p in params.values())
    for density in (0.05, 0.1, 0.3, 0.6):
        dens, eps = erk_densities(params, density)
        assert sum(dens[n] * p.numel() for n, p in params.items()) == pytest.approx(density * D, rel=1e-9)
        for n, p in params.items():
            if dens[n] < 1.0:
                assert dens[n] == pytest.approx(eps * erk_ratio(tuple(p.shape)))  # eq. A.76
            else:  # saturated layers are dense and eps is re-solved for the rest
                assert eps * erk_ratio(tuple(p.shape)) >= 1.0
    assert erk_ratio((128, 64, 3, 3)) == pytest.approx((128 + 64 + 2 * 3) / (128 * 64 * 9))
    assert erk_ratio((256, 128, 9)) == pytest.approx((256 + 128 + 2 * 3) / (256 * 128 * 9))  # n# plays K^2
    dens, _ = erk_densities(params, 0.6)
    assert dens["conv1"] == 1.0 and dens["fc"] == 1.0  # small layers saturate first


def test_erk_random_mask_keeps_exact_counts_and_is_seeded():
    params = _shapes()
    D = sum(p.numel() for p in params.values())
    q = 0.9
    mask, info = erk_random_mask(params, q, 0, "t")
    counts = erk_counts(params, math.floor((1 - q) * D))
    assert {n: int(m.sum()) for n, m in mask.masks.items()} == counts
    assert mask.kept() == math.floor((1 - q) * D)
    again, _ = erk_random_mask(params, q, 0, "t")
    other, _ = erk_random_mask(params, q, 1, "t")
    assert again.equal(mask) and not other.equal(mask)
    assert info["eps"] == pytest.approx(erk_densities(params, 1 - q)[1])


# cosine drop schedule (eq. A.77) ----------------------------------------------------------------
def test_drop_fraction_follows_the_cosine_schedule():
    T = 10_000
    assert drop_fraction(0, T) == pytest.approx(0.5)
    assert drop_fraction(T // 2, T) == pytest.approx(0.005 + 0.5 * 0.495)
    assert drop_fraction(T, T) == pytest.approx(0.005)
    assert drop_fraction(2_500, T) == pytest.approx(0.005 + 0.5 * 0.495 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(1_500, T, 0.3, 0.01) == pytest.approx(0.01 + 0.5 * 0.29 * (1 + math.cos(0.15 * math.pi)))
    values = [drop_fraction(t, T) for t in range(0, T + 1, 1_500)]
    assert values == sorted(values, reverse=True)


# drop and grow ----------------------------------------------------------------------------------
def test_update_conserves_counts_per_layer_and_drops_the_smallest_magnitudes():
    g = torch.Generator().manual_seed(0)
    params = {"a": torch.randn(40, 30, generator=g), "b": torch.randn(16, 8, 9, generator=g), "c": torch.randn(7, generator=g)}
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in params.items()})
    for n in params:
        params[n] *= mask.masks[n]
    scores = {n: torch.rand(p.shape, generator=g) for n, p in params.items()}
    fraction = 0.25
    new, exchanged = drop_and_grow(params, mask, fraction, lambda n, p: scores[n].clone())
    grown_total = 0
    for n, p in params.items():
        old, m = mask.masks[n], new.masks[n]
        active = int(old.sum())
        assert int(m.sum()) == active, n  # per-layer count conserved
        n_drop = int(fraction * active)
        # the active - n_drop largest magnitudes survive
        values = p[old].abs()
        threshold = values.sort(descending=True).values[active - n_drop - 1]
        assert bool(m[old & (p.abs() > threshold)].all()), n
        grown_total += int((m & ~old).sum())
    assert exchanged == grown_total > 0


def test_rigl_regrows_exactly_the_largest_gradient_positions():
    w = torch.tensor([[0.9, -0.1, 0.0, 0.0], [0.5, 0.0, -0.7, 0.02]])
    mask = Mask({"w": w != 0})  # 5 active
    grad = torch.tensor([[5.0, 1.0, 3.0, 0.5], [0.0, 4.0, 2.0, 6.0]]).abs()
    # fraction 0.4 of 5 active: drop 2 smallest |w| (-0.1 and 0.02), grow the 2 largest |g| among
    # the rest: 6.0 at (1,3) is an old position (just dropped), 4.0 at (1,1) is new
    new, exchanged = drop_and_grow({"w": w}, mask, 0.4, lambda n, p: grad.clone())
    expected = torch.tensor([[True, False, False, False], [True, True, True, True]])
    assert torch.equal(new.masks["w"], expected)
    assert exchanged == 1
    # with the gradient of the dropped one small, the two best new positions are taken
    grad2 = torch.tensor([[5.0, 1.0, 3.0, 0.5], [0.0, 4.0, 2.0, 0.1]])
    new2, exchanged2 = drop_and_grow({"w": w}, mask, 0.4, lambda n, p: grad2.clone())
    assert torch.equal(new2.masks["w"], torch.tensor([[True, False, True, False], [True, True, True, False]]))
    assert exchanged2 == 2


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_update_regrows_at_zero_with_zero_momentum_and_hooks_are_free_between_updates(make_cfg, tmp_path, method):
    session = build_session(make_cfg, tmp_path, f"method={method}", "method.update_every=3", "method.compression=0.8")
    session.method.prepare(session)
    trainer = Trainer(session, "train", epochs=1)
    counts = {n: int(m.sum()) for n, m in session.mask.masks.items()}
    assert sum(counts.values()) == math.floor(0.2 * session.mask.numel())
    batches = iter(session.data.train.epoch(0))
    for _ in range(2):  # no update: same mask object, nothing stored
        before = session.mask
        manual_step(trainer, next(batches))
        assert session.mask is before
        assert getattr(session.method, "_grads", None) is None
    old = session.mask.clone()
    manual_step(trainer, next(batches))  # step 3: update
    new = session.mask
    assert session.method.record["updates"] == 1 and session.method.record["last_step"] == 3
    assert session.method.record["last_drop_fraction"] == pytest.approx(drop_fraction(3, trainer.total_steps))
    assert {n: int(m.sum()) for n, m in new.masks.items()} == counts
    regrown = 0
    for n, p in session.params.items():
        grown = new.masks[n] & ~old.masks[n]
        regrown += int(grown.sum())
        assert torch.count_nonzero(p.detach()[grown]) == 0, n
        assert torch.count_nonzero(trainer.optimizer.state[p]["momentum_buffer"][grown]) == 0, n
        assert torch.count_nonzero(p.detach()[~new.masks[n]]) == 0, n  # dropped ones are zero
    assert regrown == session.method.record["exchanged"] > 0
    if method == "rigl":
        assert session.method._grads is None  # released after the update
