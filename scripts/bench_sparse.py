"""Training on sparse kernels against masked dense training (`trainer.sparse_kernels`), one thread.

For each case a model with a random mask with Erdős-Rényi-kernel layer densities (the start mask of
SET/RigL, eq. A.76) is trained three ways from the same weights: masked dense (`off`), `auto` and
`on`. A step is what the trainer does: forward, cross-entropy, backward, MaskEnforcer.prepare_gradients,
SGD with momentum and weight decay. Steps of the three alternate (in all six orders) in one process
and are timed in CPU time (time.process_time: other processes on the machine slow all three alike
and do not enter a one-thread process's CPU time); the speed-up is the ratio of the medians,
off / auto and off / on. `auto` measures its products and runs its whole-step trial (kernels/trial.py)
during the warm-up steps, as in a run. The losses of the
first step of the three are checked to agree (float rounding; later steps drift apart, as BatchNorm
over VGG-16's near-constant channels amplifies rounding; tests/test_sparse_kernels.py compares 200
steps of the LeNets).

Cases: LeNet-300-100 and LeNet-5-Caffe (28x28, batch 100) at q = 0.9, 0.99, 0.999, VGG-16 (32x32,
batch 32) at q = 0.99, and LeNet-300-100 frozen at q = 0.99 (FreezeNet: only dL/dW may be sparse).

    python scripts/bench_sparse.py             # 24 step triples per case (a few minutes)
    python scripts/bench_sparse.py --only lenet5   # the cases of one model
    python scripts/bench_sparse.py --aa        # also a second masked dense network: the noise floor
    python scripts/bench_sparse.py --quick     # 3 per case, fewer cases

The last line is JSON: lenet300_q99_speedup and lenet5_q99_speedup (auto), min_auto_speedup (the
smallest auto speed-up over all cases: auto should never make a step slower), with `--aa` the range of
a second masked dense network's speed-up over the first (`aa_ratio_range`: what two identical steps
measure apart on this machine), `compiled` (whether the
sparse products ran on the compiled kernels of kernels/native.c or, without a C compiler, on PyTorch's
CSR operations; `SPARSE_EXP_NATIVE=0` forces the latter), and every case with the layers auto put on
sparse kernels.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparse_exp.kernels import SparseKernels, native  # noqa: E402
from sparse_exp.models import MODELS, initialise, prunable_parameters  # noqa: E402
from sparse_exp.sparsity.dst import erk_random_mask  # noqa: E402
from sparse_exp.sparsity.enforce import MaskEnforcer  # noqa: E402
from sparse_exp.training.optim import build_optimizer  # noqa: E402

TRAIN = SimpleNamespace(weight_decay=5e-4, lr=0.01, momentum=0.9, nesterov=False)
CASES = [("lenet300", (1, 28, 28), 100, q, "prune") for q in (0.9, 0.99, 0.999)] + \
        [("lenet5", (1, 28, 28), 100, q, "prune") for q in (0.9, 0.99, 0.999)] + \
        [("vgg16", (3, 32, 32), 32, 0.99, "prune"), ("lenet300", (1, 28, 28), 100, 0.99, "freeze")]
QUICK = [CASES[1], CASES[4], CASES[-1]]
KINDS = ("off", "auto", "on")


def stepper(name: str, shape, q: float, mode: str, kernels: str):
    model = MODELS.get(name).build(10, shape)
    initialise(model, "kaiming_normal", 0)
    params = prunable_parameters(model)
    mask, _ = erk_random_mask(params, q, 0, "bench")
    enforcer = MaskEnforcer(params, mask, mode, TRAIN.weight_decay)
    opt = build_optimizer(model, enforcer, TRAIN)
    enforcer.apply_(opt)
    plan = SparseKernels(kernels)
    plan.install(model, enforcer)
    model.train()
    losses = []

    def step(x, y):  # as the trainer's step, with the kernels' step bracket (auto's whole-step trial)
        plan.begin_step()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        enforcer.prepare_gradients()
        opt.step()
        plan.end_step()
        losses.append(float(loss.detach()))

    return step, plan, losses


def bench(name: str, shape, batch: int, q: float, mode: str, triples: int, aa: bool = False) -> dict:
    kinds = KINDS + (("off_again",) if aa else ())  # a second masked dense network: the noise floor
    runs = {kind: stepper(name, shape, q, mode, kind.removesuffix("_again")) for kind in kinds}
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *shape, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    for _ in range(3):  # warm-up; auto measures the products in the first of these steps
        for kind in kinds:
            runs[kind][0](x, y)
    for _ in range(60):  # auto's whole-step trial (kernels/trial.py: 3 plans x ROUNDS steps at most), as in a run
        if runs["auto"][1].settled:
            break
        for kind in kinds:
            runs[kind][0](x, y)
    cpu = {kind: [] for kind in kinds}
    orders = list(itertools.permutations(kinds))  # every kind runs after every other equally often: a step
    # after `on`'s large im2col buffers meets colder caches than one after a dense step
    for k in range(triples):
        for kind in orders[k % len(orders)]:
            c0 = time.process_time()
            runs[kind][0](x, y)
            cpu[kind].append(time.process_time() - c0)
    losses = {kind: runs[kind][2] for kind in KINDS}
    for kind in ("auto", "on"):  # the same first step up to float rounding; later steps drift apart, as
        # BatchNorm over the near-constant channels of a 1%-dense VGG-16 amplifies rounding within a few steps
        torch.testing.assert_close(torch.tensor(losses[kind][:1]), torch.tensor(losses["off"][:1]), rtol=1e-4, atol=1e-5)
    med = {kind: statistics.median(v) for kind, v in cpu.items()}
    layers = runs["auto"][1].summary()["layers"]
    return {
        "model": name, "q": q, "mode": mode, "batch": batch,
        "dense_step_ms": 1e3 * med["off"], "auto_step_ms": 1e3 * med["auto"], "on_step_ms": 1e3 * med["on"],
        "auto_speedup": med["off"] / med["auto"], "on_speedup": med["off"] / med["on"],
        "auto_plan": runs["auto"][1].plan, "auto_trial_ms": runs["auto"][1].summary().get("step_trial_ms"),
        "auto_sparse": {n: [p for p in ("forward", "grad_input", "grad_weight") if r.get(p) == "sparse"]
                        for n, r in layers.items() if any(r.get(p) == "sparse" for p in ("forward", "grad_input", "grad_weight"))},
        "densities": {n: round(r["density"], 5) for n, r in layers.items() if "density" in r},
        **({"aa_ratio": med["off"] / med["off_again"]} if aa else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triples", type=int, default=24, help="timed (off, auto, on) step triples per case")
    ap.add_argument("--quick", action="store_true", help="3 triples, three cases")
    ap.add_argument("--only", choices=sorted({c[0] for c in CASES}), help="the cases of this model only")
    ap.add_argument("--aa", action="store_true", help="time a second masked dense network too (the noise floor)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases, triples = (QUICK, 3) if args.quick else (CASES, args.triples)
    cases = [c for c in cases if args.only in (None, c[0])]
    results = []
    for name, shape, batch, q, mode in cases:
        r = bench(name, shape, batch, q, mode, triples, args.aa)
        results.append(r)
        sparse = "; ".join(f"{n.rsplit('.', 1)[0]} {'/'.join(p)}" for n, p in r["auto_sparse"].items()) or "none"
        print(f"{name:<9} q={q:<6} {mode:<6} batch {batch:>3}: step masked dense {r['dense_step_ms']:8.2f} ms, "
              f"auto {r['auto_step_ms']:8.2f} ms ({r['auto_speedup']:.2f}x), on {r['on_step_ms']:8.2f} ms "
              f"({r['on_speedup']:.2f}x)" + (f", a second dense network {r['aa_ratio']:.2f}x" if args.aa else "") +
              f" | auto plan {r['auto_plan']}, sparse: {sparse}", flush=True)

    def pick(model, q, mode="prune"):
        return next((r["auto_speedup"] for r in results if (r["model"], r["q"], r["mode"]) == (model, q, mode)), None)

    print(json.dumps({"lenet300_q99_speedup": pick("lenet300", 0.99), "lenet5_q99_speedup": pick("lenet5", 0.99),
                      "min_auto_speedup": min(r["auto_speedup"] for r in results), "threads": 1,
                      "compiled": native.lib() is not None,
                      **({"aa_ratio_range": [min(r["aa_ratio"] for r in results), max(r["aa_ratio"] for r in results)]}
                         if args.aa else {}),
                      "cases": results}))


if __name__ == "__main__":
    main()
