"""SGD at the kept entries only: the update of a sparse layer costs its nnz, not its dense size.

With a mask, the entries an SGD step changes are the trained ones: sparsity/enforce.py masks the
gradient (g <- (g + wd p) m), and momentum is exactly zero wherever m = 0, so a pruned entry stays
0 and a frozen one keeps its value. Masked dense training still runs the weight-decay fold, the
momentum update and `p -= lr * d` over every entry (bench_sparse.py: for LeNet-300-100 at 1% the
optimizer and the enforcer over fc1 cost more in a step than fc1's sparse products).

For the layers `SparseKernels` lists in `enforcer.kept_index` (id of the parameter -> flat positions of
the trained entries) this step pre-hook of torch.optim.SGD does the same arithmetic on the gathered entries:

    g_k = g[k] + wd p[k]                         the enforcer's fold where m = 1 (p[k] is trained)
    b_k = momentum b[k] + (1 - dampening) g_k    torch.optim.SGD's buffer (b_k = g_k at its first step)
    d_k = g_k + momentum b_k if nesterov else b_k
    p[k] -= lr d_k

and scatters p[k] and b[k] back. The momentum buffer stays a dense tensor in the optimizer's state (zero
at masked entries, as the dense path leaves it), so checkpoints, resumes, mask changes and LTH
rewinds see the same state as without this hook. The parameter's `.grad` is then set to None so that
SGD's own loop skips it.

Where the compiled kernels run (CPU, float32/float64: kernels/native.py), each parameter's step is one
call of native.c's `kept_sgd`, entry by entry the same arithmetic; and the hook then steps every other
parameter of the optimizer too (biases, BatchNorm, dense or masked layers not on kept entries: their
gradient as the enforcer left it, all entries, SGD's own arithmetic): a small network's step is then a
few calls instead of SGD's handful of tensor operations per parameter, each costing several
microseconds of dispatch (bench_sparse.py: LeNet-300-100's biases took 0.24 ms a step in SGD's loop).

Not used: with Adam/AdamW (their per-parameter step counters and moments stay dense), for FreezeNet-WD
(frozen entries decay too) and with `trainer.sparse_kernels=off`.
"""
from __future__ import annotations

import torch

from sparse_exp.kernels import native


@torch.no_grad()
def kept_entry_sgd_(optimizer: torch.optim.SGD, enforcer) -> None:
    """Update the parameters of `enforcer.kept_index` at their kept entries; the rest is SGD's."""
    if not enforcer.kept_index:
        return
    for group in optimizer.param_groups:
        momentum, dampening, nesterov = group["momentum"], group["dampening"], group["nesterov"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        for p in group["params"]:
            index = enforcer.kept_index.get(id(p))
            grad = p.grad
            if index is None:
                if grad is not None and not grad.is_sparse:  # all entries, as SGD would (where compiled)
                    _native_step(optimizer, group, p, None, grad, 0.0)
                continue
            if grad is not None and _native_step(optimizer, group, p, index, grad._values() if grad.is_sparse else grad,
                                                 enforcer.weight_decay):
                continue
            flat = p.view(-1)
            values = flat.index_select(0, index)
            if grad is None:  # a layer the forward did not use; the enforcer would have given it zeros
                g = torch.zeros_like(values)
            elif grad.is_sparse:  # from sparse kernels: dL/dW at exactly these entries, in this order (kernels/csr.py)
                g = grad._values()
            else:
                g = grad.view(-1).index_select(0, index)
            if enforcer.weight_decay:  # MaskEnforcer.prepare_gradients's fold, which skipped this parameter
                g.add_(values, alpha=enforcer.weight_decay)
            if group["maximize"]:  # then SGD's own steps, in its order
                g.neg_()
            if weight_decay:
                g.add_(values, alpha=weight_decay)
            d = g
            if momentum:
                state = optimizer.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # SGD's first step: the buffer is the gradient (zero at masked entries)
                    state["momentum_buffer"] = buf = torch.zeros_like(p)
                    b = g.clone()
                else:
                    b = buf.view(-1).index_select(0, index).mul_(momentum).add_(g, alpha=1 - dampening)
                buf.view(-1).scatter_(0, index, b)
                d = g.add(b, alpha=momentum) if nesterov else b
            flat.scatter_(0, index, values.add_(d, alpha=-lr))
            p.grad = None


def _native_step(optimizer, group, p: torch.Tensor, index: torch.Tensor | None, g: torch.Tensor,
                 fold: float) -> bool:
    """One call of native.c's kept_sgd where it can take these tensors (else False, nothing done): the
    entries `index` of p (None: every entry) with their gradient g, the kept entries' values in `index`
    order or the dense gradient; `fold` the enforcer's weight decay where this step takes it over."""
    momentum = group["momentum"]
    state = optimizer.state[p]
    buf = state.get("momentum_buffer") if momentum else None
    count = p.numel() if index is None else index.numel()
    dense_grad = g.shape == p.shape
    if (g.numel() != count and not dense_grad) or not native.usable(p, g, *([] if buf is None else [buf])):
        return False
    first = bool(momentum) and buf is None
    if first:  # SGD's first step: the buffer is the gradient (zero at masked entries)
        state["momentum_buffer"] = buf = torch.zeros_like(p)
    native.fn("kept_sgd", p.dtype)(count, native.ptr(index), p.data_ptr(), native.ptr(buf), g.data_ptr(),
                                   fold, group["weight_decay"], momentum, group["dampening"],
                                   group["lr"], int(group["nesterov"]), int(group["maximize"]), int(first),
                                   int(dense_grad))
    p.grad = None
    return True
