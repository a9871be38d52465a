"""Theoretical forward FLOPs of SP and IP models at a given mask (thesis 5.4.4.1; IP appendix D.1).

One FLOP is one multiplication or one addition; biases, BatchNorm, pooling and non-linearities are
not counted (as in the papers). With d1 x d2 the layer's actual output size (stride and padding
included, measured by `layer_output_sizes`) and density = 1 - q of the prunable parameter:

    conv (spatial)       2 c_out c_in K^2 d1 d2 density                          eq. A.7
    conv (interspace)    2 c_out c_in n# d1 d2 density + G 2 c_in n# K^2 d1 d2     eq. A.8
    linear               2 in out density

n# = K^2 for a basis (a dictionary scales both IP terms by n#/K^2, appendix D); G = 1 except for
out_nc sharing, where every group of output channels convolves the input with its own basis
(G = ceil(c_out / nc), section 5.5.3.3). The overhead term is the basis-first convolution of
Algorithm 5.2 and does not shrink with the mask. `dense` is the dense spatial (SP) network, the
baseline every speed-up refers to.
"""
from __future__ import annotations

import math

from torch import nn

from sparse_exp.models.describe import describe_layers, layer_output_sizes


def ip_over_sp(kernel: int, c_out: int, q: float, dict_size: int | None = None) -> float:
    """Eq. 5.15: FLOPs of a sparse FB convolution over those of the equally sparse spatial one,
    1 + K^2 / (c_out (1 - q)) for a basis; (n# / K^2) (1 + K^2 / (c_out (1 - q))) for a dictionary."""
    n = dict_size or kernel * kernel
    return n / kernel**2 * (1.0 + kernel**2 / (c_out * (1.0 - q)))


def mask_densities(mask, mode: str) -> dict[str, float]:
    """Parameter name -> fraction of entries that enter the computation. Only pruning removes
    computations; frozen (FreezeNet) and dense entries are all computed."""
    densities = mask.layer_densities()
    return densities if mode == "prune" else {name: 1.0 for name in densities}


def layer_flops(model: nn.Module, input_shape: tuple[int, int, int], densities: dict[str, float] | None = None) -> list[dict]:
    """One row per prunable layer in module order: name, kind, c_in, c_out, kernel, out (d1, d2),
    dict_size (n#, 0 for spatial layers), bases (G), density, dense, sparse, overhead (FLOPs).
    Linear layers count d1 = d2 = 1."""
    sizes = layer_output_sizes(model, tuple(input_shape))
    modules = dict(model.named_modules())
    rows = []
    for row in describe_layers(model):
        name, module = row["name"], modules[row["name"]]
        density = 1.0 if densities is None else float(densities[row["param"]])
        d1, d2 = sizes.get(name, (0, 0))  # a layer the forward pass never reaches costs nothing
        c_in = row["c_in"] // getattr(module, "groups", 1)
        c_out, k = row["c_out"], row["kernel"]
        dense = 2 * c_out * c_in * k * k * d1 * d2
        n = getattr(module, "dict_size", 0)
        bases = getattr(module, "num_bases", 1) if getattr(module, "split", "layer") == "out" else 1
        if n:  # filter-basis convolution, eq. A.8
            overhead = bases * 2 * c_in * n * k * k * d1 * d2
            sparse = 2 * c_out * c_in * n * d1 * d2 * density + overhead
        else:  # eq. A.7 (linear layers: K = 1, d1 = d2 = 1)
            overhead = 0
            sparse = dense * density
        rows.append(dict(name=name, kind=row["kind"], c_in=c_in, c_out=c_out, kernel=k, out=(d1, d2), dict_size=n,
                         bases=bases, density=density, dense=dense, sparse=sparse, overhead=overhead))
    return rows


def flops_summary(model: nn.Module, input_shape: tuple[int, int, int], densities: dict[str, float] | None = None,
                  per_layer: bool = True) -> dict:
    """Totals for metrics.json: dense (the dense SP network), sparse (this model at `densities`),
    speedup = dense / sparse, overhead (IP's basis-first share of sparse), and the layer rows."""
    rows = layer_flops(model, input_shape, densities)
    dense = sum(r["dense"] for r in rows)
    sparse = sum(r["sparse"] for r in rows)
    out = {
        "dense": int(dense),
        "sparse": float(sparse),
        "speedup": dense / sparse if sparse else math.inf,
        "overhead": int(sum(r["overhead"] for r in rows)),
    }
    if per_layer:
        out["layers"] = [{k: r[k] for k in ("name", "density", "dense", "sparse", "overhead")} for r in rows]
    return out


def backward_flops_summary(model: nn.Module, input_shape: tuple[int, int, int], densities: dict[str, float] | None = None,
                           grad_densities: dict[str, float] | None = None) -> dict:
    """Backward-pass FLOPs of one sample (IP appendix D.2), beside the forward ones: `densities` are
    the entries that enter the computation (as for the forward pass), `grad_densities` those whose
    gradient is needed (the trained ones: FreezeNet's frozen weights enter dL/dX but need no gradient).
    Per layer, with d = d1 d2 output positions and p the pruned fraction:

        spatial conv / linear   dL/dX 2 c_out c_in K^2 d (1 - p)  +  dL/dW 2 c_out c_in K^2 d (1 - p_grad)
        FB conv                 dL/dX 2 c_out c_in n# d (1 - p) + G_in 2 c_out n# K^2 d    (eqs. A.9, A.10)
                                dL/dbeta 2 c_out c_in n# d (1 - p_grad)                     (eq. A.12)
                                dL/dF 2 c_out c_in K^2 (d + n# (1 - p_grad))                (eq. A.14)

    dL/dX is a transposed convolution over the same d positions as the forward pass (the appendix's
    h w for stride 1); G_in = ceil(c_in / nc) for in_nc sharing, else 1 (every input channel group
    correlates dL/dY with its own basis). `dense` is the dense SP network's backward pass."""
    rows = layer_flops(model, input_shape, densities)
    grads = grad_densities or {}
    modules = dict(model.named_modules())
    params = {r["name"]: r["param"] for r in describe_layers(model)}
    dense_total = sparse_total = overhead_total = 0.0
    for r in rows:
        c_out, c_in, k, (d1, d2), n = r["c_out"], r["c_in"], r["kernel"], r["out"], r["dict_size"]
        d = d1 * d2
        density, grad_density = r["density"], float(grads.get(params[r["name"]], r["density"]))
        dense = 4 * c_out * c_in * k * k * d
        if n:
            module = modules[r["name"]]
            g_in = getattr(module, "num_bases", 1) if getattr(module, "split", "layer") == "in" else 1
            overhead = g_in * 2 * c_out * n * k * k * d + 2 * c_out * c_in * k * k * (d + n * grad_density)
            sparse = 2 * c_out * c_in * n * d * (density + grad_density) + overhead
        else:
            overhead = 0
            sparse = 2 * c_out * c_in * k * k * d * (density + grad_density)
        dense_total, sparse_total, overhead_total = dense_total + dense, sparse_total + sparse, overhead_total + overhead
    return {"dense": int(dense_total), "sparse": float(sparse_total),
            "speedup": dense_total / sparse_total if sparse_total else math.inf, "overhead": int(overhead_total)}
