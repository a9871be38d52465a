"""The learning rate at given iterations matches each paper preset (Tables A.9-A.11)."""
from __future__ import annotations

import pytest

from sparse_exp.training.schedule import LRSchedule, schedule_from_config

# (preset, steps per epoch, [(iteration, expected lr)]) -- expectations written out by hand from the tables.
CASES = [
    # MNIST: 54,000 train samples / 100 = 540 steps; x0.1 every 25k iterations.
    ("snip_mnist", 540, [(0, 0.1), (24_999, 0.1), (25_000, 0.01), (49_999, 0.01), (50_000, 0.001), (124_999, 1e-5), (125_000, 1e-6)]),
    # CIFAR-10: 45,000 / 128 = 352 steps (last one partial); x0.1 every 30k iterations.
    ("snip_cifar10", 352, [(0, 0.1), (29_999, 0.1), (30_000, 0.01), (60_000, 0.001), (87_999, 0.001)]),
    ("snip_cifar100", 352, [(0, 0.01), (30_000, 0.001), (60_000, 0.0001)]),
    # ResNet18 CIFAR-100: x0.2 at epochs 60 and 120.
    ("synflow_cifar100", 352, [(0, 0.01), (60 * 352 - 1, 0.01), (60 * 352, 0.002), (120 * 352, 0.0004)]),
    # Tiny ImageNet: the whole training folder (dataset.val_fraction=0), 100,000 / 128 -> 782 steps; epochs 30/60/80.
    ("synflow_tiny_imagenet", 782, [(0, 0.1), (30 * 782, 0.01), (60 * 782, 0.001), (80 * 782 - 1, 0.001), (80 * 782, 0.0001)]),
    ("synflow_tiny_imagenet_wd5e4", 782, [(0, 0.1), (30 * 782, 0.01), (80 * 782, 0.0001)]),
    # VGG-16-LTH: epochs 80/120.
    ("lth_cifar10", 352, [(0, 0.1), (80 * 352 - 1, 0.1), (80 * 352, 0.01), (120 * 352, 0.001)]),
    # ImageNet (whole training set, 1,281,167 images): batch 512 -> 2,503 steps, 256 -> 5,005, 128 -> 10,010. PaI: epochs 30/60.
    ("grasp_imagenet", 2503, [(0, 0.1), (30 * 2503, 0.01), (60 * 2503, 0.001), (89 * 2503, 0.001)]),
    # RigL/FT: 5 warm-up epochs, linear per iteration, then epochs 30/60/90.
    ("itop_imagenet", 10010, [(0, 0.1 / (5 * 10010)), (5 * 10010 // 2 - 1, 0.05), (5 * 10010 - 1, 0.1), (30 * 10010, 0.01), (90 * 10010, 0.0001)]),
    # CPU-scale reproductions (Table A.9's MNIST setup shortened): x0.1 every 100 / 500 iterations.
    ("repro_lenet5", 540, [(0, 0.1), (99, 0.1), (100, 0.01), (539, 1e-6)]),
    ("repro_lenet300", 540, [(0, 0.1), (499, 0.1), (500, 0.01), (2699, 1e-6)]),
    # GMP: warm-up, then epochs 30/60/80.
    ("gale_imagenet", 5005, [(0, 0.1 / (5 * 5005)), (5 * 5005, 0.1), (80 * 5005, 0.0001)]),
]


@pytest.mark.parametrize("preset,spe,points", CASES, ids=[c[0] for c in CASES])
def test_preset_learning_rates(make_cfg, preset, spe, points):
    cfg = make_cfg(f"trainer={preset}")
    schedule = schedule_from_config(cfg.trainer, spe)
    for step, expected in points:
        assert schedule.lr(step) == pytest.approx(expected, rel=1e-12), (preset, step)


def test_every_preset_is_covered():
    from sparse_exp.cli import group_options

    assert set(group_options("trainer")) - {"demo"} == {c[0] for c in CASES}


def test_warmup_then_constant():
    s = LRSchedule(1.0, steps_per_epoch=10, warmup_epochs=1)
    assert [s.lr(t) for t in range(11)] == pytest.approx([0.1 * (t + 1) for t in range(10)] + [1.0])


def test_cosine_after_warmup_by_hand():
    """lr(t) = lr_min + (lr0 - lr_min) (1 + cos(pi (t - W) / (T - W))) / 2 after a linear warm-up of W steps."""
    s = LRSchedule(1.0, steps_per_epoch=10, warmup_epochs=1, cosine_steps=50, min_lr=0.1)
    assert s.lr(0) == pytest.approx(0.1) and s.lr(4) == pytest.approx(0.5) and s.lr(9) == pytest.approx(1.0)
    assert s.lr(10) == pytest.approx(1.0)  # the cosine starts at lr0
    assert s.lr(30) == pytest.approx(0.55)  # half way: cos(pi/2) = 0
    assert s.lr(20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + 2**-0.5))  # a quarter: cos(pi/4)
    assert s.lr(50) == pytest.approx(0.1) and s.lr(70) == pytest.approx(0.1)  # ends on lr_min and stays


def test_schedule_from_config_cosine_and_defaults():
    from types import SimpleNamespace

    base = dict(lr=1.0, lr_gamma=0.5, lr_every_iters=None, lr_milestones=[], warmup_epochs=0.0, epochs=5)
    cos = SimpleNamespace(**base, lr_schedule="cosine", lr_min=0.2)
    s = schedule_from_config(cos, steps_per_epoch=10)  # T = epochs x steps per epoch = 50
    assert s.lr(25) == pytest.approx(0.6) and s.lr(50) == pytest.approx(0.2)
    s = schedule_from_config(cos, steps_per_epoch=10, total_steps=20)  # a phase shorter than trainer.epochs
    assert s.lr(10) == pytest.approx(0.6) and s.lr(20) == pytest.approx(0.2)
    step = SimpleNamespace(**{**base, "lr_milestones": [2]})  # a config without lr_schedule / lr_min: step decay
    s = schedule_from_config(step, steps_per_epoch=10)
    assert [s.lr(t) for t in (0, 19, 20, 49)] == pytest.approx([1.0, 1.0, 0.5, 0.5])
    assert s.cosine_steps is None and s.min_lr == 0.0


def test_defaults_and_both_decay_kinds_together():
    s = LRSchedule(1.0, steps_per_epoch=10, milestones=[1])  # default gamma 0.1, no warm-up
    assert [s.lr(t) for t in (0, 9, 10)] == pytest.approx([1.0, 1.0, 0.1])
    s = LRSchedule(1.0, steps_per_epoch=10, every_iters=25, milestones=[1])  # decays add up
    assert [s.lr(t) for t in (9, 10, 24, 25, 50)] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.001])
    s = LRSchedule(1.0, steps_per_epoch=10, cosine_steps=10)  # default lr_min 0
    assert s.lr(10) == pytest.approx(0.0, abs=1e-15) and s.lr(5) == pytest.approx(0.5)
    s = LRSchedule(1.0, steps_per_epoch=10, cosine_steps=1, min_lr=0.25)  # a one-step cosine: lr0, then lr_min
    assert [s.lr(0), s.lr(1)] == pytest.approx([1.0, 0.25])


def test_describe_says_what_the_schedule_does():
    s = LRSchedule(0.1, steps_per_epoch=10, every_iters=25_000, milestones=[3], warmup_epochs=1)
    assert s.describe() == ("lr 0.1, x0.1 every 25000 iterations, x0.1 at iterations [30], "
                            "linear warm-up over 10 iterations")
    assert LRSchedule(1.0, 10, cosine_steps=50, min_lr=0.1).describe() == "lr 1, cosine to 0.1 at iteration 50"
    assert LRSchedule(0.5, 10).describe() == "lr 0.5"
