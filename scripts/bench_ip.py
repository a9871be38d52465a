"""Cost of an interspace (IP) training step against the spatial (SP) one, one thread.

For each model (VGG-16 and ResNet18 on 32x32 inputs) an SP and an IP network (medium sharing,
standard initialisation, the same seed) are trained with the same random mask (q = 0.9) by the
framework's pieces: forward, cross-entropy, backward, MaskEnforcer.prepare_gradients, SGD step with
momentum and weight decay. Steps of the two alternate (SP-IP, then IP-SP, ...) in one process.
`ip_over_sp_step_ratio` is the ratio of the median CPU times (time.process_time: the machine's other
processes slow the wall clock of both, not the CPU time a step needs); wall-clock medians are
printed too. The IP step adds a constant cost (composing W = beta F, and dL/dbeta, dL/dF from
dL/dW: memory-bound passes over the coefficients), so the ratio falls with the batch size.

For comparison the script times the eval forward pass of the IP network with every FB layer
evaluated basis-first (Algorithm 5.2: a depthwise convolution with all n# elements, then a 1x1
convolution with the coefficients) against the composed forward (W = beta F, then one ordinary
convolution), and reports the theoretical dense FLOP overhead of basis-first evaluation
(appendix D.1: 1 + K^2 / c_out per layer).

    python scripts/bench_ip.py                   # batch 32, 10 pairs per model (about 2 minutes)
    python scripts/bench_ip.py --quick           # batch 32, 2 pairs
    python scripts/bench_ip.py --malloc retain   # keep freed memory in the process (glibc mallopt)
    python scripts/bench_ip.py --pairs 16 --repeats 3 --aa   # the README row: 3 whole measurements, noise floor

The CPU time of one step varies by +-20% on a shared VM (memory bandwidth and cache taken by the
other core's work), so a ratio from 10-16 pairs moves by several percent between runs. `--repeats R`
repeats the whole measurement (fresh networks) R times and reports every ratio; the headline is
then the median over repeats (per model, the JSON's largest over the models). `--aa` puts a second,
identical SP network into the alternation (SP, IP, SP'), whose ratio SP'/SP is the measurement's
own noise: an IP/SP ratio is only meaningfully above 1.05 if it stands out from that. Each result
also lists the median of the per-pair ratios (adjacent IP and SP steps), which cancels slow drifts.

`--malloc retain` stops glibc from returning freed memory to the OS after every step, which
otherwise makes each large tensor allocation page-fault again (it speeds up SP and IP alike).
The last line is JSON with `ip_over_sp_step_ratio` (the largest ratio over the models).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sparse_exp.layers.interspace import fb_layers, to_interspace  # noqa: E402
from sparse_exp.measure.flops import flops_summary  # noqa: E402
from sparse_exp.models import MODELS, initialise, prunable_parameters  # noqa: E402
from sparse_exp.sparsity.enforce import MaskEnforcer  # noqa: E402
from sparse_exp.sparsity.mask import Mask  # noqa: E402
from sparse_exp.training.optim import build_optimizer  # noqa: E402

CASES = (("vgg16", (3, 32, 32)), ("resnet18", (3, 32, 32)))
TRAIN = SimpleNamespace(weight_decay=5e-4, lr=0.01, momentum=0.9, nesterov=False)


def build(name: str, shape, scheme: str, seed: int = 0):
    model = MODELS.get(name).build(10, shape)
    to_interspace(model, SimpleNamespace(name=scheme, nc=1, dict_size=None, basis_weight_decay=False), "standard")
    initialise(model, "kaiming_normal", seed)
    return model


def trainer(model, flat_keep: torch.Tensor):
    """A step function for `model` with the mask given as one flat vector (the same entries for SP
    and IP: a (c_out, c_in, K^2) coefficient tensor flattens like its (c_out, c_in, K, K) weight)."""
    params = prunable_parameters(model)
    enforcer = MaskEnforcer(params, Mask.from_flat(flat_keep, params), "prune", TRAIN.weight_decay)
    opt = build_optimizer(model, enforcer, TRAIN)
    enforcer.apply_(opt)
    model.train()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        enforcer.prepare_gradients()
        opt.step()

    return step


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def retain_freed_memory() -> None:
    """glibc: serve allocations up to 32 MB from the heap and never trim it (mallopt(3))."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 2**31 - 1)


@torch.no_grad()
def forward_costs(model, x, pairs: int) -> tuple[float, float]:
    """(composed, basis-first) eval forward CPU seconds, medians over alternating calls."""
    model.eval()
    layers = [layer for _, layer in fb_layers(model)]

    def basis_first(inp):
        for layer in layers:
            layer.forward = layer.forward_basis_first  # instance attribute shadows the method
        try:
            return model(inp)
        finally:
            for layer in layers:
                del layer.forward

    torch.testing.assert_close(basis_first(x), model(x), rtol=1e-3, atol=1e-3)
    composed, first = [], []
    for _ in range(pairs):
        composed.append(timed(model, x)[1])
        first.append(timed(basis_first, x)[1])
    return statistics.median(composed), statistics.median(first)


def bench(name: str, shape, batch: int, pairs: int, q: float, aa: bool = False) -> dict:
    sp, ip = build(name, shape, "none"), build(name, shape, "medium")
    total = sum(p.numel() for p in prunable_parameters(sp).values())
    keep = torch.zeros(total, dtype=torch.bool)
    keep[torch.randperm(total, generator=torch.Generator().manual_seed(0))[: int((1 - q) * total)]] = True
    steps = {"sp": trainer(sp, keep), "ip": trainer(ip, keep)}
    if aa:  # a second SP network: the ratio of two identical steps, i.e. the noise of the measurement
        steps["sp2"] = trainer(build(name, shape, "none"), keep)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *shape, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    for _ in range(2):  # warm-up (allocator, momentum buffers)
        for step in steps.values():
            step(x, y)
    kinds = list(steps)
    wall, cpu = {k: [] for k in kinds}, {k: [] for k in kinds}
    for k in range(pairs):
        for kind in kinds if k % 2 == 0 else kinds[::-1]:
            w, c = timed(steps[kind], x, y)
            wall[kind].append(w)
            cpu[kind].append(c)
    composed, first = forward_costs(ip, x, max(3, pairs // 2))
    dense_ip = flops_summary(ip, shape, None, per_layer=False)
    return {
        "batch": batch,
        "sp_step_ms": 1e3 * statistics.median(cpu["sp"]),
        "ip_step_ms": 1e3 * statistics.median(cpu["ip"]),
        "ip_over_sp_step_ratio": statistics.median(cpu["ip"]) / statistics.median(cpu["sp"]),
        "ip_over_sp_paired_median": statistics.median(i / s for i, s in zip(cpu["ip"], cpu["sp"])),
        "sp_step_ms_quartiles": [1e3 * v for v in statistics.quantiles(cpu["sp"], n=4)],
        "ip_step_ms_quartiles": [1e3 * v for v in statistics.quantiles(cpu["ip"], n=4)],
        **({"sp2_over_sp_step_ratio": statistics.median(cpu["sp2"]) / statistics.median(cpu["sp"])} if aa else {}),
        "sp_step_wall_ms": 1e3 * statistics.median(wall["sp"]),
        "ip_step_wall_ms": 1e3 * statistics.median(wall["ip"]),
        "ip_over_sp_wall_ratio": statistics.median(wall["ip"]) / statistics.median(wall["sp"]),
        "composed_forward_ms": 1e3 * composed,
        "basis_first_forward_ms": 1e3 * first,
        "basis_first_over_composed": first / composed,
        "basis_first_flop_overhead": dense_ip["sparse"] / dense_ip["dense"],  # dense IP (Alg. 5.2) / dense SP FLOPs
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=10, help="alternating SP/IP step pairs per model")
    ap.add_argument("--malloc", choices=("default", "retain"), default="default", help="glibc allocator setting (see above)")
    ap.add_argument("--q", type=float, default=0.9, help="compression of the shared random mask")
    ap.add_argument("--quick", action="store_true", help="2 pairs per model")
    ap.add_argument("--repeats", type=int, default=1, help="whole measurements (fresh networks); headline: their median")
    ap.add_argument("--aa", action="store_true", help="also time a second SP network (SP'/SP: the noise floor)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.malloc == "retain":
        retain_freed_memory()
    batch, pairs = args.batch, (2 if args.quick else args.pairs)
    runs = {name: [] for name, _ in CASES}
    for rep in range(args.repeats):
        for name, shape in CASES:
            r = bench(name, shape, batch, pairs, args.q, args.aa)
            runs[name].append(r)
            aa = f", SP'/SP {r['sp2_over_sp_step_ratio']:.3f}" if args.aa else ""
            print(f"{name:<9} batch {batch}{f' (repeat {rep + 1}/{args.repeats})' if args.repeats > 1 else ''}: "
                  f"step CPU time SP {r['sp_step_ms']:7.1f} ms, IP {r['ip_step_ms']:7.1f} ms, "
                  f"IP/SP {r['ip_over_sp_step_ratio']:.3f} (paired {r['ip_over_sp_paired_median']:.3f}, wall {r['ip_over_sp_wall_ratio']:.3f}{aa}) "
                  f"| eval forward composed {r['composed_forward_ms']:7.1f} ms, "
                  f"basis-first (Alg. 5.2) {r['basis_first_forward_ms']:7.1f} ms ({r['basis_first_over_composed']:.2f}x; "
                  f"FLOPs {r['basis_first_flop_overhead']:.2f}x)", flush=True)
    results = {}
    for name, rs in runs.items():
        results[name] = dict(rs[0]) if len(rs) == 1 else {
            "ip_over_sp_step_ratio": statistics.median(r["ip_over_sp_step_ratio"] for r in rs),
            "ip_over_sp_step_ratio_repeats": [r["ip_over_sp_step_ratio"] for r in rs],
            "ip_over_sp_paired_median_repeats": [r["ip_over_sp_paired_median"] for r in rs],
            **({"sp2_over_sp_step_ratio_repeats": [r["sp2_over_sp_step_ratio"] for r in rs]} if args.aa else {}),
            "repeats": rs,
        }
    if args.repeats > 1:
        for name, r in results.items():
            aa = f"; SP'/SP {', '.join(f'{v:.3f}' for v in r['sp2_over_sp_step_ratio_repeats'])}" if args.aa else ""
            print(f"{name:<9} IP/SP over {args.repeats} repeats: {', '.join(f'{v:.3f}' for v in r['ip_over_sp_step_ratio_repeats'])} "
                  f"(median {r['ip_over_sp_step_ratio']:.3f}; paired {', '.join(f'{v:.3f}' for v in r['ip_over_sp_paired_median_repeats'])}{aa})")
    worst = max(r["ip_over_sp_step_ratio"] for r in results.values())
    print(json.dumps({"ip_over_sp_step_ratio": worst, "threads": 1, "q": args.q, "batch": batch, "malloc": args.malloc,
                      "pairs": pairs, "repeats": args.repeats, "models": results}))

if __name__ == "__main__":
    main()
