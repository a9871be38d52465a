"""Gradual magnitude pruning (IP appendix G.5): the cubic schedule of eq. A.82 at given steps, the
batch-size scaling of Gale et al.'s iteration counts, nested masks with an exact final density,
and the end of pruning inside the training (end-to-end run: test_dst_end_to_end.py)."""
from __future__ import annotations

import math

import pytest
import torch

from sparse_exp.config.validate import validate
from sparse_exp.errors import ConfigError
from sparse_exp.methods.gmp import GMPConfig, GradualMagnitudePruning
from sparse_exp.sparsity.schedules import gmp_compression, gmp_is_update
from sparse_exp.training.trainer import Trainer
from test_dst import build_session, manual_step


def test_cubic_schedule_at_given_steps():
    q, t0, t1 = 0.9, 160_000, 304_000
    assert gmp_compression(0, q, t0, t1) == 0.0
    assert gmp_compression(t0 - 1, q, t0, t1) == 0.0
    assert gmp_compression(t0, q, t0, t1) == 0.0
    assert gmp_compression(232_000, q, t0, t1) == pytest.approx(0.9 * (1 - 0.5**3))  # half way: 7/8 of q
    assert gmp_compression(t0 + 36_000, q, t0, t1) == pytest.approx(0.9 * (1 - 0.75**3))
    assert gmp_compression(t1, q, t0, t1) == pytest.approx(q)
    assert gmp_compression(t1 + 10_000, q, t0, t1) == q
    steps = [t for t in range(0, 500_001, 1_000) if gmp_is_update(t, t0, t1, 8_000)]
    assert steps[0] == t0 and steps[-1] == t1 and len(steps) == 19 and all(b - a == 8_000 for a, b in zip(steps, steps[1:]))
    # t1 is always an update, so q is reached exactly even off the N grid
    assert [t for t in range(0, 30) if gmp_is_update(t, 4, 13, 4)] == [4, 8, 12, 13]


@pytest.mark.parametrize("q,batch,expected", [
    (0.8, 256, (160_000, 400_000, 8_000)),  # appendix G.5
    (0.9, 256, (160_000, 304_000, 8_000)),
    (0.9, 1024, (40_000, 76_000, 2_000)),  # Gale et al.
    (0.9, 128, (320_000, 608_000, 16_000)),
])
def test_gale_iterations_scale_with_the_batch_size(q, batch, expected):
    method = GradualMagnitudePruning(GMPConfig(compression=q))
    assert method.iterations(batch) == expected


def test_plain_iterations_and_bad_schedule(make_cfg):
    method = GradualMagnitudePruning(GMPConfig(compression=0.5, begin_step=3, end_step=9, update_every=2, reference_batch_size=None))
    assert method.iterations(256) == (3, 9, 2)
    cfg = make_cfg("method=gmp", "method.begin_step=10", "method.end_step=5")
    with pytest.raises(ConfigError, match="method.begin_step"):
        validate(cfg)


def test_masks_are_nested_and_the_final_density_is_exact(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=gmp", "method.compression=0.85", "method.reference_batch_size=null",
                            "method.begin_step=1", "method.end_step=7", "method.update_every=2", "trainer.epochs=1")
    method = session.method
    method.steps = method.iterations(session.cfg.trainer.batch_size)
    method.session = session
    method.prepare(session)
    trainer = Trainer(session, "train", epochs=1)
    D = session.mask.numel()
    masks = [session.mask.clone()]
    for step, batch in zip(range(8), session.data.train.epoch(0)):
        manual_step(trainer, batch)
        t = trainer.step
        expected = math.floor((1 - gmp_compression(t, 0.85, 1, 7)) * D + 1e-9) if t >= 1 else D
        assert session.mask.kept() == (expected if gmp_is_update(t, 1, 7, 2) else masks[-1].kept()), t
        assert bool((session.mask.flat() <= masks[-1].flat()).all())  # pruned weights never regrow
        for n, p in session.params.items():
            assert torch.count_nonzero(p.detach()[~session.mask.masks[n]]) == 0
        masks.append(session.mask.clone())
    assert session.mask.kept() == math.floor(0.15 * D)
    s = method.summary()["gmp"]
    assert s["final_density"] == pytest.approx(0.15, abs=1e-5) and s["updates"] == 3  # steps 3, 5, 7; t0 = 1 prunes nothing


def test_end_step_beyond_the_training_is_an_error(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=gmp")  # t1 = 76,000 * 1024 / 50 iterations > 16
    with pytest.raises(ConfigError, match="method.end_step"):
        session.method.run(session)
