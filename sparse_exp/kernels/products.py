"""The three products of a linear or convolutional layer, each dense or on the CSR structure.

A training step of a layer computes Y = W X (forward), dL/dX = W^T dL/dY (grad_input) and
dL/dW = dL/dY X^T (grad_weight). With W pruned to density d, the sparse versions cost about d times
the dense arithmetic: forward and grad_input are CSR x dense products, grad_weight is
`torch.sparse.sampled_addmm`, dL/dY X^T evaluated at the kept entries only (the other entries of the
gradient are masked by sparsity/enforce.py anyway); on CPU these run as the compiled kernels of
kernels/native.c (kernels/csr.py). A convolution becomes a matrix product through
its columns (im2col: `F.unfold`), W viewed as (c_out, c_in K^2); grad_input folds the column
gradients back (`F.fold`, col2im).

In freeze mode (FreezeNet) the frozen entries are non-zero and take part in the forward pass and in
dL/dX, so only grad_weight may be sparse (the gradient of the trained entries).
`SparseLayerFunction` runs a layer with each product dense or sparse as its kernel's plan says;
`dense_weight_grad` asks for the full dL/dW in the steps where a method reads it (RigL's regrowth).
A layer whose SGD step runs at its kept entries (kernels/update.py) gets a sparse dL/dW (COO, the kept
entries only) instead of a dense one that is zero elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.kernels import native

PRODUCTS = ("forward", "grad_input", "grad_weight")


class LinearProducts:
    """y = x W^T for x of shape (..., in); the products work on x flattened to (N, in).

    Compiled (`native.usable`): row-major kernels on x (N, in) and dL/dY (N, out) as they are
    (kernels/native.c, rows_*). PyTorch's CSR products instead want their dense operand with contiguous
    rows of the reduced dimension (measured: sampled_addmm is about 7x faster at 0.3% density with both
    operands laid out so), hence there x^T (in, N) and dL/dY^T (out, N) are made contiguous once and
    shared by the products. Which of the two a call takes depends only on the dtype and device of the
    tensors and the weight, so a layer's forward and backward always agree on it."""

    kind = "linear"

    def __init__(self, module: nn.Linear):
        self.in_features, self.out_features = module.in_features, module.out_features

    @staticmethod
    def compiled(t: torch.Tensor, w: torch.Tensor) -> bool:
        return t.is_cpu and t.dtype is w.dtype and native.usable(w)

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.in_features)

    def columns(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """What the weight gradient reads of x: x (N, in) compiled, x^T (in, N) for PyTorch's CSR."""
        x2 = self.flat(x)
        return x2.contiguous() if self.compiled(x, w) else x2.t().contiguous()

    def flat_grad(self, gy: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """dL/dY as the sparse products read it: (N, out) compiled, else (out, N)."""
        g = gy.reshape(-1, self.out_features)
        return g.contiguous() if self.compiled(gy, w) else g.t().contiguous()

    def columns_mb(self, x: torch.Tensor) -> float:
        return x.numel() * x.element_size() / 2**20

    def forward(self, x, w, bias, structure, sparse: bool):
        if not sparse:
            return F.linear(x, w, bias), None
        columns = self.columns(x, w)
        if self.compiled(x, w):
            y2 = structure.rows_mm(w, columns, bias)
        else:  # (N, out), a transposed view: the next layer's x^T is contiguous
            y2 = structure.mm(w, columns, bias).t()
        return y2.reshape(*x.shape[:-1], self.out_features), columns

    def grad_input(self, gy, flat, x, w, structure, sparse: bool):
        if not sparse:
            return gy.matmul(w)
        if self.compiled(gy, w):
            return structure.rows_mm_t(w, flat).reshape(x.shape)
        return structure.mm_t(w, flat).t().reshape(x.shape)

    def grad_weight(self, gy, flat, x, w, structure, sparse: bool, columns=None, coo: bool = False,
                    bias_grad: bool = False):
        """dL/dW, and dL/db where `bias_grad` and it comes with the same pass (else None)."""
        if not sparse:
            return gy.reshape(-1, self.out_features).t() @ self.flat(x), None
        columns = self.columns(x, w) if columns is None else columns
        if self.compiled(gy, w):
            return structure.rows_sampled(flat, columns, w, coo, bias_grad)
        return structure.sampled(flat, columns, w, coo), None

    def bias_dims(self, gy) -> tuple[int, ...]:
        return tuple(range(gy.dim() - 1))


class ConvProducts:
    """A 2D convolution (groups 1, zero padding) as products of W (c_out, c_in K^2) with its columns."""

    kind = "conv"

    def __init__(self, module: nn.Conv2d):
        self.kernel_size, self.stride = module.kernel_size, module.stride
        self.padding, self.dilation = module.padding, module.dilation
        self.out_channels = module.out_channels

    def columns(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """im2col: (c_in K^2, B L) for L output positions per sample."""
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, c_in K^2, L)
        return cols.transpose(0, 1).reshape(cols.shape[1], -1)

    def flat_grad(self, gy: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return gy.transpose(0, 1).reshape(self.out_channels, -1)  # (c_out, B L)

    def columns_mb(self, x: torch.Tensor) -> float:
        """Size of the im2col columns of input x (c_in K^2 x B L values)."""
        ho, wo = self.out_size(x)
        k = self.kernel_size[0] * self.kernel_size[1]
        return x.shape[0] * x.shape[1] * k * ho * wo * x.element_size() / 2**20

    def out_size(self, x: torch.Tensor) -> tuple[int, int]:
        return tuple((x.shape[2 + d] + 2 * self.padding[d] - self.dilation[d] * (self.kernel_size[d] - 1) - 1)
                     // self.stride[d] + 1 for d in (0, 1))

    def forward(self, x, w, bias, structure, sparse: bool):
        if not sparse:
            return F.conv2d(x, w, bias, self.stride, self.padding, self.dilation), None
        columns = self.columns(x)
        y2 = structure.mm(w, columns, bias)  # (c_out, B L)
        return y2.view(self.out_channels, x.shape[0], *self.out_size(x)).transpose(0, 1), columns

    def grad_input(self, gy, flat, x, w, structure, sparse: bool):
        if not sparse:
            return torch.nn.grad.conv2d_input(x.shape, w, gy, self.stride, self.padding, self.dilation)
        gcols = structure.mm_t(w, flat)  # (c_in K^2, B L)
        gcols = gcols.view(gcols.shape[0], x.shape[0], -1).transpose(0, 1)
        return F.fold(gcols, x.shape[2:], self.kernel_size, self.dilation, self.padding, self.stride)

    def grad_weight(self, gy, flat, x, w, structure, sparse: bool, columns=None, coo: bool = False,
                    bias_grad: bool = False):
        """dL/dW, and None for the bias gradient (taken from dL/dY by the caller)."""
        if not sparse:
            return torch.nn.grad.conv2d_weight(x, w.shape, gy, self.stride, self.padding, self.dilation), None
        columns = self.columns(x) if columns is None else columns
        return structure.sampled(flat, columns, w, coo), None

    def bias_dims(self, gy) -> tuple[int, ...]:
        return (0, 2, 3)


def products_for(module: nn.Module):
    """The products of a layer that sparse kernels can run, or (None, why not)."""
    if type(module) is nn.Linear:
        return LinearProducts(module), ""
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return None, "grouped convolution"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return None, "padding other than explicit zeros"
        return ConvProducts(module), ""
    return None, f"{type(module).__name__} layer"


class SparseLayerFunction(torch.autograd.Function):
    """A layer's forward and backward with each product dense or sparse (`kernel.use`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, kernel):
        use, products, structure = kernel.use, kernel.products, kernel.structure
        y, columns = products.forward(x, weight, bias, structure, use["forward"])
        keep = columns if use["grad_weight"] and columns is not None else None
        ctx.kernel = kernel
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight, keep)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, columns = ctx.saved_tensors
        kernel = ctx.kernel
        use, products, structure = kernel.use, kernel.products, kernel.structure
        gx = gw = gb = None
        sparse_gx = use["grad_input"] and ctx.needs_input_grad[0]
        sparse_gw = use["grad_weight"] and ctx.needs_input_grad[1] and not kernel.owner.dense_weight_grad
        want_gb = ctx.has_bias and ctx.needs_input_grad[2]
        flat = products.flat_grad(gy, weight) if sparse_gx or sparse_gw else None
        if ctx.needs_input_grad[0]:
            gx = products.grad_input(gy, flat, x, weight, structure, sparse_gx)
        if ctx.needs_input_grad[1]:  # sparse COO where SGD steps this layer at its kept entries (kernels/update.py)
            gw, gb = products.grad_weight(gy, flat, x, weight, structure, sparse_gw, columns, kernel.sparse_grad(),
                                          want_gb)
        if want_gb and gb is None:
            gb = gy.sum(products.bias_dims(gy))
        return gx, gw, gb, None
