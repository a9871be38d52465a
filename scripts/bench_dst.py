"""Cost of SET and RigL against a static-mask training of the same model and density, one thread.

VGG-16 (Table A.3, built from the model registry) on CIFAR-10-shaped synthetic data with a random
ERK mask at q = 0.9 (eq. A.76). Three trainers share the model and the mask: `static` (the base
Method, whose hooks do nothing: a fixed mask in pruned mode), `set` (update every 1,500 steps) and
`rigl` (every 4,000). Measured in one process:

* the static training step: the real loop (Trainer.train_epoch: forward, backward, after_backward,
  mask, SGD step, after_step), steps of the three trainers alternating, none an update step;
* the hooks on non-update steps, timed alone (100,000 calls): an integer test, no tensor work, no
  host synchronisation;
* the update itself (drop, grow, optimizer-state reset; RigL also keeps |g| in after_backward) on
  the live trainers.

    dst_over_static_ratio = max over SET, RigL of 1 + (hooks - static hooks + update / t_p) / static step

`update_vgg16_s` is the larger update time. The alternating DST and static steps are compared
directly too (`block_ratio`: median over rounds of DST step / static step of the same round); on a
shared 2-core machine that comparison carries a few per cent of timing noise either way, far above
the sub-microsecond cost of the hooks, so it checks for hidden costs rather than measuring them.
Times are CPU times of the process (time.process_time, one thread: other processes slow the wall
clock, not the work); wall-clock medians are printed too.

    python scripts/bench_dst.py            # batch 128 (Table A.11), 12 rounds of single steps
    python scripts/bench_dst.py --quick    # batch 32, 4 rounds

The last line is JSON.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

import sparse_exp.cli as cli  # noqa: E402
from sparse_exp.data import DATASETS  # noqa: E402
from sparse_exp.models.build import build_model, init_seed_of  # noqa: E402
from sparse_exp.methods.base import Method  # noqa: E402
from sparse_exp.methods.rigl import RigL, RigLConfig  # noqa: E402
from sparse_exp.methods.set import SET  # noqa: E402
from sparse_exp.tracking.tensorboard import Tracker  # noqa: E402
from sparse_exp.training.session import Session  # noqa: E402
from sparse_exp.training.trainer import Trainer  # noqa: E402

Q = 0.9


def build_session(batch: int, block: int) -> Session:
    cli._register_schemas()
    overrides = ["dataset=synthetic", "dataset.shape=[3,32,32]", f"dataset.size={int(batch * block * 1.2) + 2}",
                 "dataset.test_size=10", "model=vgg16", "init=standard", "method=set", f"method.compression={Q}",
                 f"trainer.batch_size={batch}", f"trainer.max_steps_per_epoch={block}", "trainer.epochs=100000",
                 "trainer.lr=0.01", "trainer.weight_decay=5e-4", "trainer.log_every=1000000000", "device=cpu"]
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    device = torch.device("cpu")
    data = DATASETS.get("synthetic")(cfg.dataset, batch_size=batch, eval_batch_size=batch, seed=0, device=device)
    model = build_model(cfg, data.num_classes, data.input_shape, init_seed_of(cfg))
    return Session(cfg, "/tmp", device, model, data, SET(cfg.method), Tracker("/tmp", enabled=False), 0, None, is_writer=False)


def timed(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def run_block(trainer: Trainer) -> None:
    trainer.train_epoch(trainer.step // trainer.steps_per_epoch)


def hook_cost(method: Method, trainer: Trainer, calls: int = 100_000) -> float:
    """CPU seconds per step of after_backward + after_step on non-update steps."""
    c = time.process_time()
    for i in range(calls):
        method.after_backward(trainer, 1)
        method.after_step(trainer, 2)
    return (time.process_time() - c) / calls


def update_cost(method, trainer: Trainer, t_p: int, repeats: int) -> tuple[list[float], list[float]]:
    """CPU and wall seconds of the mask update at step t_p (RigL: with keeping |g| at step t_p - 1)."""
    cpu, wall = [], []
    x, y = next(iter(trainer.data.train.epoch(0)))
    for _ in range(repeats):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.criterion(trainer.model(x), y).backward()

        def update():
            method.after_backward(trainer, t_p - 1)
            method.after_step(trainer, t_p)

        c, w = timed(update)
        cpu.append(c)
        wall.append(w)
    assert method.record["updates"] == repeats and method.record["exchanged"] > 0
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 32, 4 rounds")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--block", type=int, default=None, help="steps per timed block")
    args = parser.parse_args()
    batch = args.batch or (32 if args.quick else 128)
    rounds = args.rounds or (4 if args.quick else 12)
    block = args.block or 1
    torch.set_num_threads(1)
    torch.manual_seed(0)

    session = build_session(batch, block)
    session.method.prepare(session)  # the ERK mask at q = 0.9, pruned mode
    D = session.mask.numel()
    methods = {"static": Method(session.cfg.method), "set": session.method, "rigl": RigL(RigLConfig(compression=Q))}
    t_p = {"set": methods["set"].cfg.update_every, "rigl": methods["rigl"].cfg.update_every}
    trainers = {}
    for name, method in methods.items():
        session.method = method  # the trainer calls the hooks of the method it was built with
        trainers[name] = Trainer(session, name, epochs=100_000)
    for trainer in trainers.values():  # warm-up: allocator, momentum buffers
        run_block(trainer)

    cpu = {n: [] for n in methods}
    wall = {n: [] for n in methods}
    order = list(methods)
    for r in range(rounds):
        for name in order[r % 3:] + order[: r % 3]:  # rotate who goes first
            c, w = timed(lambda: run_block(trainers[name]))
            cpu[name].append(c / block)
            wall[name].append(w / block)
    assert all(m.record["updates"] == 0 for n, m in methods.items() if n != "static")  # no update inside the blocks

    step = {n: statistics.median(v) for n, v in cpu.items()}
    step_wall = {n: statistics.median(v) for n, v in wall.items()}
    # Each round's DST block against the static block of the same round (drift of the machine cancels).
    paired = {n: statistics.median(a / b for a, b in zip(cpu[n], cpu["static"])) for n in ("set", "rigl")}
    hooks = {n: hook_cost(m, trainers[n]) for n, m in methods.items()}
    upd, upd_wall = {}, {}
    for name in ("set", "rigl"):
        c, w = update_cost(methods[name], trainers[name], t_p[name], repeats=2 if args.quick else 3)
        upd[name], upd_wall[name] = statistics.median(c), statistics.median(w)
    ratio = {n: 1 + (hooks[n] - hooks["static"] + upd[n] / t_p[n]) / step["static"] for n in ("set", "rigl")}
    block_ratio = {n: paired[n] + upd[n] / t_p[n] / step["static"] for n in ("set", "rigl")}
    spread = {n: (min(a / b for a, b in zip(cpu[n], cpu["static"])), max(a / b for a, b in zip(cpu[n], cpu["static"])))
              for n in ("set", "rigl")}

    print(f"VGG-16, {D:,} prunable weights, ERK mask q = {Q} ({session.mask.kept():,} kept), batch {batch}, "
          f"1 thread, {rounds} rounds of {block}-step blocks")
    print(f"{'':8} {'step cpu [s]':>13} {'step wall [s]':>14} {'hooks [us/step]':>16} {'update cpu [s]':>15} "
          f"{'update wall [s]':>16} {'t_p':>6} {'ratio vs static':>16}")
    for n in methods:
        u = f"{upd[n]:15.3f} {upd_wall[n]:16.3f} {t_p[n]:6d} {ratio[n]:16.5f}" if n in upd else f"{'':15} {'':16} {'':6} {1.0:16.5f}"
        print(f"{n:8} {step[n]:13.3f} {step_wall[n]:14.3f} {1e6 * hooks[n]:16.2f} {u}")
    print("ratio vs static = 1 + (hooks - static hooks + update / t_p) / static step")
    for n in ("set", "rigl"):
        print(f"check, {n}: alternating steps / static steps of the same round: median {paired[n]:.4f} "
              f"(range {spread[n][0]:.4f}-{spread[n][1]:.4f}, timing noise), with the amortised update {block_ratio[n]:.4f}")
    result = {
        "dst_over_static_ratio": round(max(ratio.values()), 5),
        "update_vgg16_s": round(max(upd.values()), 3),
        "ratio": {n: round(v, 6) for n, v in ratio.items()},
        "update_s": {n: round(v, 3) for n, v in upd.items()},
        "update_wall_s": {n: round(v, 3) for n, v in upd_wall.items()},
        "step_s": {n: round(v, 4) for n, v in step.items()},
        "step_wall_s": {n: round(v, 4) for n, v in step_wall.items()},
        "hook_us_per_step": {n: round(1e6 * v, 3) for n, v in hooks.items()},
        "block_ratio": {n: round(v, 4) for n, v in block_ratio.items()},
        "block_ratio_range": {n: [round(a, 4), round(b, 4)] for n, (a, b) in spread.items()},
        "update_every": t_p,
        "batch": batch, "rounds": rounds, "block": block, "prunable": D, "compression": Q, "threads": 1,
        "quick": args.quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
