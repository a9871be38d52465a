"""Benchmark of the COPS solver (Algorithm 4.1, sparse_exp/sparsity/cops/) on one CPU thread.

    python scripts/bench_cops.py                 # 15.3M (VGG-16) and 1M with HiGHS: about 2 minutes
    python scripts/bench_cops.py --skip-highs    # COPS only

1. D = 15.3M (VGG-16 on CIFAR-10): the full COPS mask from two float32 importance vectors
   (normalisation, kappa_min, bisection, projection) for several balance factors alpha at q = 0.95;
   `cops_15m_s` is the slowest of them (target: <= 3 s on one core).
2. D = 1M (i.i.d. float64 scores by default, the easier instance for HiGHS; --highs-instance vgg for
   the VGG-shaped ones, on which HiGHS needs more than 15 minutes): the same problem solved by COPS and by `scipy.optimize.linprog(method="highs-ipm")` (the LP
   (4.13): minimise s0.m s.t. s1.m <= kappa, 1.m <= d, 0 <= m <= 1), both times and both objective values;
   `ratio_1m` = HiGHS time / COPS time (target: >= 50), `objective_rel_diff` = |p*_COPS - p*_HiGHS| / |p*_HiGHS|
   (target: <= 1e-6).

The scores are synthetic but shaped like SNIP and GraSP on a freshly initialised VGG-16: per layer
theta ~ N(0, 2 / fan_in), gradients g with a per-layer scale, target |g * theta| (heavy tailed, >= 0),
control theta * (0.5 g + noise) (mixed sign, correlated with the target). Timings are wall-clock and
process CPU time, measured side by side in one process; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sparse_exp.sparsity import cops  # noqa: E402
from sparse_exp.sparsity.select import kept_count  # noqa: E402

# VGG-16 of Table A.3 on CIFAR-10: conv weights (fan_in, numel) and the linear layers
VGG16 = [(27, 1728), (576, 36864), (576, 73728), (1152, 147456), (1152, 294912), (2304, 589824), (2304, 589824),
         (2304, 1179648), (4608, 2359296), (4608, 2359296), (4608, 2359296), (4608, 2359296), (4608, 2359296),
         (512, 262144), (512, 262144), (512, 5120)]


def synthetic_scores(D: int, seed: int = 0, layers: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, control) importances of length D, float32, shaped like SNIP / GraSP on VGG-16
    (layers=False: one layer, i.e. i.i.d. entries, in float64)."""
    gen = torch.Generator().manual_seed(seed)
    if not layers:  # float64: float32 rounding creates ties that make HiGHS' dual simplex cleanup crawl
        theta, grad = (torch.randn(D, generator=gen, dtype=torch.float64) for _ in range(2))
        return (theta * grad).abs(), theta * (0.5 * grad + torch.randn(D, generator=gen, dtype=torch.float64))
    sizes = np.array([n for _, n in VGG16], dtype=float)
    counts = np.floor(sizes / sizes.sum() * D).astype(int)
    counts[-4] += D - counts.sum()
    theta, grad = [], []
    for i, ((fan_in, _), n) in enumerate(zip(VGG16, counts)):
        theta.append(torch.randn(int(n), generator=gen) * (2.0 / fan_in) ** 0.5)
        grad.append(torch.randn(int(n), generator=gen) * 1e-3 * (1 + i))
    theta, grad = torch.cat(theta), torch.cat(grad)
    hg = 0.5 * grad + torch.randn(D, generator=gen) * grad.abs().mean()
    return (theta * grad).abs(), theta * hg


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=15_300_000, help="size of the VGG-16 problem")
    parser.add_argument("--small", type=int, default=1_000_000, help="size of the HiGHS comparison")
    parser.add_argument("--q", type=float, default=0.95, help="compression rate")
    parser.add_argument("--alphas", default="0.05,0.5,0.9,0.99,0.99999")
    parser.add_argument("--alpha-small", type=float, default=0.99, help="alpha of the HiGHS comparison")
    parser.add_argument("--skip-highs", action="store_true")
    parser.add_argument("--quick", action="store_true", help="two alphas at 15.3M and HiGHS at 100k only")
    parser.add_argument("--highs-instance", choices=("iid", "vgg"), default="iid",
                        help="1M instance: i.i.d. float64 scores (default; HiGHS ~1-2 min) or the VGG-16-shaped float32 "
                             "ones, on which HiGHS takes far longer (48 s at 200k, > 15 min at 1M: its time grows ~D^1.7)")
    args = parser.parse_args(argv)
    if args.quick:
        args.alphas, args.small = "0.5,0.99999", 100_000
    torch.set_num_threads(1)
    result: dict = {}

    # 1. VGG-16 size ---------------------------------------------------------------------------
    target, control = synthetic_scores(args.big)
    d = kept_count(args.q, args.big)
    cops.cops_mask(target[:1_000_000], control[:1_000_000], d // 15, 0.9)  # warm-up (allocator, code paths)
    per_alpha = {}
    print(f"COPS, D = {args.big:,}, d = {d:,} (q = {args.q}), one thread:")
    for alpha in (float(a) for a in args.alphas.split(",")):
        res, wall, cpu = timed(lambda: cops.cops_mask(target, control, d, alpha))
        per_alpha[str(alpha)] = round(wall, 3)
        print(f"  alpha = {alpha:<8g} {wall:6.2f} s wall, {cpu:6.2f} s CPU | lambda* = {res.lam:.6g}, "
              f"{res.steps} bisection steps, {res.evaluations} evaluations, {res.candidates:,} candidates left, "
              f"S1 = {res.s1:.6g} <= kappa = {res.kappa:.6g}")
        assert res.s1 <= res.kappa and res.kept == d
    result["cops_15m_s"] = max(per_alpha.values())
    result["cops_15m_s_per_alpha"] = per_alpha
    del target, control

    # 2. 1M against HiGHS ------------------------------------------------------------------------
    target, control = synthetic_scores(args.small, seed=1, layers=args.highs_instance == "vgg")
    d = kept_count(args.q, args.small)
    res, wall, cpu = timed(lambda: cops.cops_mask(target, control, d, args.alpha_small))
    best = min(timed(lambda: cops.cops_mask(target, control, d, args.alpha_small))[1] for _ in range(3))
    result["cops_1m_s"] = round(min(wall, best), 4)
    print(f"COPS, D = {args.small:,}, alpha = {args.alpha_small}: {result['cops_1m_s']:.3f} s (best of 4), "
          f"relaxed optimum p* = {res.relaxed_objective!r}, g(lambda*) = {res.dual_value!r}")
    result["cops_objective"] = res.relaxed_objective
    if not args.skip_highs:
        from scipy.optimize import linprog

        s0, _ = cops.normalise(target)
        s1, _ = cops.normalise(control)
        s0, s1 = s0.numpy(), s1.numpy()
        A = np.vstack([s1, np.ones_like(s1)])
        lp, wall, cpu = timed(lambda: linprog(s0, A_ub=A, b_ub=np.array([res.kappa, d]), bounds=(0, 1), method="highs-ipm"))
        assert lp.status == 0, lp.message
        result["highs_1m_s"] = round(wall, 2)
        result["highs_objective"] = float(lp.fun)
        result["ratio_1m"] = round(wall / result["cops_1m_s"], 1)
        result["objective_rel_diff"] = abs(res.relaxed_objective - lp.fun) / abs(lp.fun)
        print(f"HiGHS interior point, same LP: {wall:.1f} s wall ({cpu:.1f} s CPU), optimum {lp.fun!r}")
        print(f"  COPS is {result['ratio_1m']:.0f}x faster; objectives differ by {result['objective_rel_diff']:.2e} (relative)")
    result.update(small_size=args.small, quick=args.quick)  # with --quick the "_1m" figures are at 100k
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
