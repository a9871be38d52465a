"""Real CPU inference speed-up of sparse SP and IP networks against the dense one (Figs. 5.8, A6(a)).

Follows IP appendix D.4: VGG-16 on a 3x32x32 input, batch size 1, BatchNorm and non-linearities
omitted, every layer simulated by a scipy.sparse.csr_matrix matrix-vector product of matching
dimensions (IP: the dense basis-first convolution of Algorithm 5.2, then the CSR product with the
sparse coefficients), mean of 25 runs, one thread. The IP model follows its sharing plan
(`--sharing`, `--nc`): layers it keeps spatial (ResNet stems) are timed as in SP, out_nc layers
convolve with ceil(c_out / nc) bases; the theory column counts FLOPs of the same two models. Uniform sparsity: every layer has density 1 - p.
`--mask run/mask.npz` adds a row with the per-layer densities of a run's mask (e.g. LTH's).

    python scripts/sparse_speedup.py                 # p = 0.5 ... 0.995, 25 runs (about a minute)
    python scripts/sparse_speedup.py --quick         # one p, 3 runs (tests)

Prints one row per p: dense ms, SP ms, IP ms, measured SP/IP speed-ups and the theoretical ones
(FLOPs, measure/flops.py). The last line is JSON.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch load their BLAS: one core, as in appendix D.4

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sparse_exp.layers.interspace import to_interspace  # noqa: E402
from sparse_exp.measure.flops import flops_summary  # noqa: E402
from sparse_exp.measure.speedup import layer_geometry, time_dense, time_sparse  # noqa: E402
from sparse_exp.models import MODELS, prunable_parameters  # noqa: E402
from sparse_exp.sparsity.mask import Mask  # noqa: E402

DEFAULT_P = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995)


def build(model_name: str, shape, sharing: str, nc: int, dict_size):
    """The model of the table as SP (sharing none) or IP with the sharing plan that is timed."""
    model = MODELS.get(model_name).build(10, shape)
    cfg = argparse.Namespace(name=sharing, nc=nc, dict_size=dict_size, basis_weight_decay=False)
    return to_interspace(model, cfg, "random")


def theoretical(models: list, shape, densities: list[float]) -> list[float]:
    """(SP, IP) theoretical speed-ups: dense FLOPs over sparse FLOPs of the very models that are timed
    (the IP model's own sharing plan: spatial stems, out_nc bases)."""
    out = []
    for model in models:
        names = list(prunable_parameters(model))
        out.append(flops_summary(model, shape, dict(zip(names, densities)), per_layer=False)["speedup"])
    return out


def mask_densities(path: str, geometry: list[dict]) -> list[float]:
    mask = Mask.load(path)
    by_module = {name.rsplit(".", 1)[0]: d for name, d in mask.layer_densities().items()}
    return [by_module[g["name"]] for g in geometry]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vgg16", help="a registry model (default vgg16, Table A.3)")
    ap.add_argument("--p", type=float, nargs="*", default=None, help=f"pruning rates (default {DEFAULT_P})")
    ap.add_argument("--runs", type=int, default=25, help="timed runs per layer (appendix D.4: 25)")
    ap.add_argument("--dict-size", type=int, default=None, help="n# of the IP dictionary (default K^2)")
    ap.add_argument("--sharing", default="fine", help="the IP model's sharing scheme (default fine; "
                    "layer-wide schemes time alike, out_nc multiplies the basis-first work)")
    ap.add_argument("--nc", type=int, default=1, help="channels per basis for in_nc / out_nc")
    ap.add_argument("--mask", default=None, help="a run's mask.npz: one more row with its layer densities")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="p = 0.9 only, 3 runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ps = [0.9] if args.quick else (args.p or list(DEFAULT_P))
    runs = 3 if args.quick else args.runs
    spec = MODELS.get(args.model)
    shape = spec.input_shapes[0]
    sp_model = spec.build(10, shape)
    ip_model = build(args.model, shape, args.sharing, args.nc, args.dict_size)
    geometry, ip_geometry = layer_geometry(sp_model, shape), layer_geometry(ip_model, shape)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    dense = time_dense(geometry, runs, rng)
    configs = [(f"{p}", p, [1.0 - p] * len(geometry)) for p in ps]
    if args.mask:
        densities = mask_densities(args.mask, geometry)
        numel = [g["c_out"] * g["c_in"] * g["kernel"] ** 2 for g in geometry]
        p_mask = 1.0 - sum(d * n for d, n in zip(densities, numel)) / sum(numel)
        configs.append((f"mask {p_mask:.4f}", p_mask, densities))
    print(f"{args.model} {'x'.join(map(str, shape))}, batch 1, CSR matrix-vector products, mean of {runs} runs, 1 thread")
    header = f"{'p':>12} {'dense ms':>9} {'SP ms':>8} {'IP ms':>8} {'SP x':>6} {'IP x':>6} {'SP x theory':>11} {'IP x theory':>11}"
    print(header)
    rows = []
    for label, p, densities in configs:
        sp_s, ip_s = time_sparse(geometry, densities, runs, rng, ip_geometry)
        th_sp, th_ip = theoretical([sp_model, ip_model], shape, densities)
        row = dict(p=round(p, 6), dense_ms=1e3 * dense, sp_ms=1e3 * sp_s, ip_ms=1e3 * ip_s,
                   sp_speedup=dense / sp_s, ip_speedup=dense / ip_s, sp_theory=th_sp, ip_theory=th_ip)
        rows.append(row)
        print(f"{label:>12} {row['dense_ms']:9.2f} {row['sp_ms']:8.2f} {row['ip_ms']:8.2f} {row['sp_speedup']:6.2f} "
              f"{row['ip_speedup']:6.2f} {th_sp:11.2f} {th_ip:11.2f}", flush=True)
    print(json.dumps({"model": args.model, "input": list(shape), "runs": runs, "dict_size": args.dict_size,
                      "sharing": args.sharing, "nc": args.nc,
                      "seconds": round(time.perf_counter() - t0, 1), "rows": rows}))


if __name__ == "__main__":
    main()
