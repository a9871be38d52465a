"""Benchmark of the mask machinery (one thread, ratios measured side by side in one process).

* masked_step_ratio / frozen_step_ratio: a training step (forward, backward, mask/decay folding,
  SGD step) with a pruning / freezing mask over the dense step of the same model and batch,
  LeNet-5-Caffe (28x28, batch 100) and VGG-16 (32x32, batch 32); the reported ratio is the worse
  of the two models. Steps alternate between modes one by one and are timed in CPU time, so
  background load and allocator state hit all alike; the cost of the masking itself (folding the
  decay into the gradient and masking it) is also timed alone, as a fraction of a dense step.
* topk_15m_s: exact global top-k over a VGG-16-sized score vector (15.3M entries).
* synflow_vgg16_s: the 100 rounds of iterative SynFlow on VGG-16 with CIFAR input.
* the time of each score (SNIP, GraSP with 1 batch of 128, one-shot SynFlow) next to the time of one
  VGG-16/CIFAR-10 training epoch (352 steps of 128, estimated from measured steps).

    .venv/bin/python scripts/bench_masks.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sparse_exp.config.schema import TrainerConfig
from sparse_exp.models import MODELS
from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.init import initialise
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.scores import SCORES, ScoringConfig
from sparse_exp.sparsity.scores.context import ScoreContext
from sparse_exp.sparsity.scores.synflow import synflow_iterative
from sparse_exp.sparsity.select import topk_mask
from sparse_exp.training.optim import build_optimizer


def build(name: str, shape):
    model = MODELS.get(name).build(10, shape)
    initialise(model, "kaiming_normal", 0)
    return model


def make_step(name, shape, batch, mode):
    model = build(name, shape)
    params = prunable_parameters(model)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(p.shape, generator=g) < 0.1 for n, p in params.items()})
    enforcer = MaskEnforcer(params, mask if mode != "dense" else Mask.ones(params), mode, 5e-4)
    opt = build_optimizer(model, enforcer, TrainerConfig(lr=0.01, momentum=0.9, weight_decay=5e-4))
    enforcer.apply_(opt)
    x = torch.randn(batch, *shape, generator=g)
    y = torch.randint(10, (batch,), generator=g)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        enforcer.prepare_gradients()
        opt.step()

    step.enforcer = enforcer
    return step


def step_ratios(name, shape, batch, rounds, steps):
    """Median CPU time per step of each mode, the modes interleaved step by step so that load and
    allocator state hit all of them alike; plus the direct cost of the mask/decay folding."""
    steps_fn = {mode: make_step(name, shape, batch, mode) for mode in ("dense", "prune", "freeze")}
    for fn in steps_fn.values():  # warm-up
        fn()
        fn()
    times = {mode: [] for mode in steps_fn}
    for _ in range(rounds * steps):
        for mode, fn in steps_fn.items():
            t0 = time.process_time()
            fn()
            times[mode].append(time.process_time() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    prepare = steps_fn["prune"].enforcer.prepare_gradients
    fold = statistics.median(time_each(prepare, 20))
    return med, med["prune"] / med["dense"], med["freeze"] / med["dense"], fold / med["dense"]


def time_each(fn, n):
    out = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return out


def time_it(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds, steps = (3, 2) if args.quick else (9, 3)

    print("training step: dense vs pruning/freezing mask (median CPU seconds per step, interleaved)")
    results = {}
    for name, shape, batch in (("lenet5", (1, 28, 28), 100), ("vgg16", (3, 32, 32), 32)):
        med, rp, rf, fold = step_ratios(name, shape, batch, rounds, steps * (5 if name == "lenet5" else 1))
        results[name] = (rp, rf, fold)
        print(f"  {name:<7} batch {batch:<4} dense {med['dense'] * 1e3:8.2f} ms  prune {med['prune'] * 1e3:8.2f} ms "
              f"(x{rp:.3f})  freeze {med['freeze'] * 1e3:8.2f} ms (x{rf:.3f})  mask+decay folding alone {100 * fold:.2f}% of a step")

    scores = torch.rand(15_300_000, generator=torch.Generator().manual_seed(0))
    k = int(0.01 * scores.numel())
    topk_s = time_it(lambda: topk_mask(scores, k), repeat=3)
    print(f"exact global top-k, 15.3M scores, keep 1%: {topk_s:.3f} s")

    vgg = build("vgg16", (3, 32, 32))
    params = prunable_parameters(vgg)
    g = torch.Generator().manual_seed(1)
    batch = [(torch.randn(128, 3, 32, 32, generator=g), torch.randint(10, (128,), generator=g))]

    def ctx(**kw):
        return ScoreContext(vgg, params, lambda: batch, 10, (3, 32, 32), ScoringConfig(**kw), torch.Generator().manual_seed(0))

    rounds_sf = 10 if args.quick else 100
    D = sum(p.numel() for p in params.values())
    synflow_s = time_it(lambda: synflow_iterative(ctx(synflow_rounds=rounds_sf), D // 100))
    if args.quick:
        synflow_s *= 100 / rounds_sf  # extrapolated to 100 rounds
    score_s = {name: time_it(lambda: SCORES.get(name)(ctx())) for name in ("snip", "grasp", "synflow")}
    step = make_step("vgg16", (3, 32, 32), 128, "dense")
    step()
    step_s = time_it(step, repeat=2)
    epoch_s = step_s * 352
    print(f"SynFlow, {100} rounds on VGG-16 (32x32): {synflow_s:.2f} s{' (extrapolated from 10)' if args.quick else ''}")
    print(f"scores on VGG-16 (1 batch of 128): " + ", ".join(f"{n} {t:.2f} s" for n, t in score_s.items())
          + f"; one CIFAR-10 training epoch (352 steps x {step_s:.2f} s) ~ {epoch_s:.0f} s")

    out = {
        "masked_step_ratio": max(r[0] for r in results.values()),
        "frozen_step_ratio": max(r[1] for r in results.values()),
        "masked_step_ratio_lenet5": results["lenet5"][0],
        "masked_step_ratio_vgg16": results["vgg16"][0],
        "frozen_step_ratio_lenet5": results["lenet5"][1],
        "frozen_step_ratio_vgg16": results["vgg16"][1],
        "mask_overhead_fraction_lenet5": results["lenet5"][2],
        "mask_overhead_fraction_vgg16": results["vgg16"][2],
        "topk_15m_s": topk_s,
        "synflow_vgg16_s": synflow_s,
        "snip_vgg16_s": score_s["snip"],
        "grasp_vgg16_s": score_s["grasp"],
        "synflow_oneshot_vgg16_s": score_s["synflow"],
        "vgg16_cifar10_epoch_s_estimate": epoch_s,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
