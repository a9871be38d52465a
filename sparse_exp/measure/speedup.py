"""Real CPU inference speed of sparse SP and IP networks, simulated as in IP appendix D.4.

Every layer is timed as a matrix-vector product of matching dimensions with scipy.sparse.csr_matrix
(batch 1; BatchNorm and non-linearities omitted):

* dense / SP  conv: W^ (c_out d1 d2 x c_in K^2) . x^ (c_in K^2) - dense numpy, resp. CSR with the
              layer's density (each filter's kept entries drawn at random, the same for all d1 d2
              output positions, as in the im2col matrix of a real convolution);
* IP          conv: first the dense basis-first convolution of Algorithm 5.2 (all n# elements with
              every input channel, c_in n# d1 d2 outputs of K^2 products each) as its im2col product
              F (n# x K^2) . patches (K^2 x c_in d1 d2), a dense GEMM; then the CSR product
              beta^ (c_out d1 d2 x c_in n#) . z (c_in n#) with the coefficients' density;
* linear      (out x in) . x, dense resp. CSR (the same for SP and IP).

The dense baseline and the CSR products are memory-bound matrix-vector products while the basis
step is a compute-bound GEMM, so at very high p the measured IP overhead is smaller than the FLOP
count predicts (the thesis observes the same: "the actual computational overhead of IP is not as
pronounced as in theory", section 5.5.2.4).

A network's time is the sum over layers of the mean of `runs` timed calls (after one warm-up, CPU
time of the single-threaded process); SP and IP calls alternate so drifts of the machine hit both alike.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
from torch import nn

from sparse_exp.models.describe import describe_layers, layer_output_sizes


def layer_geometry(model: nn.Module, input_shape: tuple[int, int, int]) -> list[dict]:
    """name, kind, c_in, c_out, kernel, positions (d1 d2) of every prunable layer, and for an
    interspace model its plan: dict_size (n#; 0 for a layer that stays spatial, e.g. ResNet18's
    7x7 stem) and bases (G, the bases a layer convolves its input with: ceil(c_out / nc) for out_nc)."""
    sizes = layer_output_sizes(model, tuple(input_shape))
    modules = dict(model.named_modules())
    rows = []
    for r in describe_layers(model):
        module = modules[r["name"]]
        bases = getattr(module, "num_bases", 1) if getattr(module, "split", "layer") == "out" else 1
        rows.append(dict(name=r["name"], kind=r["kind"], c_in=r["c_in"], c_out=r["c_out"], kernel=r["kernel"],
                         positions=sizes[r["name"]][0] * sizes[r["name"]][1],
                         dict_size=getattr(module, "dict_size", 0), bases=bases))
    return rows


def basis_first_shape(g: dict) -> tuple[int, int] | None:
    """The basis-first GEMM of an IP layer (Algorithm 5.2, line 3): (G n#, K^2) basis rows times the
    K^2 x c_in d1 d2 patches; None for a layer the interspace model keeps spatial (eq. A.7 applies)."""
    if not g.get("dict_size"):
        return None
    return g["bases"] * g["dict_size"], g["kernel"] ** 2


def filter_csr(filters: int, cols: int, positions: int, density: float, rng: np.random.Generator) -> sp.csr_matrix:
    """(filters positions x cols) CSR: filter f keeps round(density cols) random columns, repeated for
    each of its `positions` rows."""
    keep = int(round(density * cols))
    pattern = np.argsort(rng.random((filters, cols), dtype=np.float32), axis=1)[:, :keep]
    pattern.sort(axis=1)
    indices = np.repeat(pattern.astype(np.int32), positions, axis=0).reshape(-1)
    indptr = np.arange(filters * positions + 1, dtype=np.int64) * keep
    data = rng.random(indices.size, dtype=np.float32) + 0.5
    return sp.csr_matrix((data, indices, indptr), shape=(filters * positions, cols))


def mean_seconds(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Mean time of each function over `runs` calls, the functions called in turn. The clock is the
    process' CPU time: with one thread it is the runtime, without the slow-down that other processes
    on a shared machine would add to the wall clock."""
    for fn in fns:
        fn()  # warm-up
    totals = [0.0] * len(fns)
    for _ in range(runs):
        for k, fn in enumerate(fns):
            t0 = time.process_time()
            fn()
            totals[k] += time.process_time() - t0
    return [t / runs for t in totals]


def time_dense(geometry: list[dict], runs: int, rng: np.random.Generator) -> float:
    """Seconds of the dense network: dense matrix-vector products of the same dimensions."""
    total = 0.0
    for g in geometry:
        rows, cols = g["c_out"] * g["positions"], g["c_in"] * g["kernel"] ** 2
        a = rng.random((rows, cols), dtype=np.float32)
        x = rng.random(cols, dtype=np.float32)
        total += mean_seconds([lambda: a @ x], runs)[0]
        del a
    return total


def time_sparse(geometry: list[dict], densities: list[float], runs: int, rng: np.random.Generator,
                ip_geometry: list[dict] | None = None) -> tuple[float, float]:
    """(SP seconds, IP seconds) of the network with layer densities `densities` (coefficients of IP
    have the same density as the spatial weights of SP). `ip_geometry` is `layer_geometry` of the
    interspace model (its sharing plan); a layer it keeps spatial is timed as in SP. Without it every
    KxK convolution (K > 1) counts as a filter-basis convolution with one basis of K^2 elements."""
    if ip_geometry is None:
        ip_geometry = [dict(g, dict_size=g["kernel"] ** 2 if g["kind"] == "conv" and g["kernel"] > 1 else 0, bases=1)
                       for g in geometry]
    sp_total, ip_total = 0.0, 0.0
    for g, g_ip, density in zip(geometry, ip_geometry, densities):
        k2 = g["kernel"] ** 2
        a_sp = filter_csr(g["c_out"], g["c_in"] * k2, g["positions"], density, rng)
        x_sp = rng.random(a_sp.shape[1], dtype=np.float32)
        shape = basis_first_shape(g_ip)
        if shape is None:  # linear layers, 1x1 convs and convs the IP model keeps spatial: as in SP
            t = mean_seconds([lambda: a_sp @ x_sp], runs)[0]
            sp_total, ip_total = sp_total + t, ip_total + t
            continue
        n = g_ip["dict_size"]
        a_ip = filter_csr(g["c_out"], g["c_in"] * n, g["positions"], density, rng)
        basis = rng.random(shape, dtype=np.float32)
        patches = rng.random((k2, g["c_in"] * g["positions"]), dtype=np.float32)
        z = rng.random(a_ip.shape[1], dtype=np.float32)

        def ip():
            basis @ patches  # Algorithm 5.2, line 3: every basis element with every input channel
            return a_ip @ z  # line 5: the sparse coefficients combine them

        t_sp, t_ip = mean_seconds([lambda: a_sp @ x_sp, ip], runs)
        sp_total, ip_total = sp_total + t_sp, ip_total + t_ip
    return sp_total, ip_total
