"""The CSR structure of one masked weight: where the kept entries are, in both orientations.

A weight of shape (rows, cols) (a linear layer's (out, in); a convolution's (c_out, c_in K^2)) with
mask m keeps nnz entries. The structure stores their flat positions in row-major order (`index`,
which is CSR order) with CSR's row pointers and column indices, and the same for the transpose
(`index_t`, the kept entries in column-major order), so each step builds W and W^T as CSR tensors
by gathering nnz values from the dense parameter (`index_select`, 4x faster than `w[index]`): no dense -> sparse conversion per step. The
structure changes only when the mask does (SET, RigL, GMP, LTH rounds rebuild it).

On CPU tensors of float32/float64 the products run as the compiled kernels of kernels/native.c (one call
each, reading the kept values straight from the dense parameter); elsewhere as PyTorch's CSR operations.
"""
from __future__ import annotations

import warnings

import torch

from sparse_exp.kernels import native

# PyTorch warns once that CSR support is "beta"; the products used here are tested against dense ones.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def _csr_indices(mask2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow_indices, col_indices, flat row-major positions) of the True entries of a 2D mask."""
    rows, cols = mask2d.shape
    index = mask2d.reshape(-1).nonzero().squeeze(1)
    counts = torch.bincount(index // cols, minlength=rows)
    crow = torch.zeros(rows + 1, dtype=torch.int64, device=mask2d.device)
    crow[1:] = torch.cumsum(counts, 0)
    return crow, index % cols, index


class CSRStructure:
    def __init__(self, mask: torch.Tensor):
        mask2d = mask.reshape(mask.shape[0], -1).bool()
        self.shape = tuple(mask2d.shape)
        self.crow, self.col, self.index = _csr_indices(mask2d)
        crow_t, col_t, index_t = _csr_indices(mask2d.t())
        self.crow_t, self.col_t = crow_t, col_t
        rows, cols = self.shape
        self.index_t = (index_t % rows) * cols + index_t // rows  # (c, r) of the transpose -> r * cols + c
        self.nnz = int(self.index.numel())
        self.numel = rows * cols
        self._coo_indices = None  # the kept entries' coordinates in the parameter's shape (sampled(coo=True))
        self._pattern = torch.sparse_csr_tensor(self.crow, self.col, torch.zeros(self.nnz, device=mask.device),
                                                self.shape, check_invariants=False)

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 1.0

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """W (rows, cols) as a CSR tensor with the current values of the dense parameter."""
        return torch.sparse_csr_tensor(self.crow, self.col, weight.reshape(-1).index_select(0, self.index), self.shape,
                                       check_invariants=False)

    def matrix_t(self, weight: torch.Tensor) -> torch.Tensor:
        """W^T (cols, rows) as a CSR tensor."""
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, weight.reshape(-1).index_select(0, self.index_t),
                                       self.shape[::-1], check_invariants=False)

    def mm(self, weight: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """W b (+ bias per row) for b (cols, n): the forward product Y^T = W X^T, shape (rows, n)."""
        if native.usable(weight, b, *([] if bias is None else [bias])):
            out = b.new_empty(self.shape[0], b.shape[1])
            native.fn("csr_mm", b.dtype)(self.shape[0], b.shape[1], self.crow.data_ptr(), self.col.data_ptr(),
                                         self.index.data_ptr(), weight.data_ptr(), b.data_ptr(), native.ptr(bias),
                                         out.data_ptr())
            return out
        out = self.matrix(weight) @ b
        return out if bias is None else out + bias.unsqueeze(1)

    def mm_t(self, weight: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """W^T b for b (rows, n): dL/dX^T = W^T dL/dY^T, shape (cols, n)."""
        if native.usable(weight, b):
            out = b.new_empty(self.shape[1], b.shape[1])
            native.fn("csr_mm", b.dtype)(self.shape[1], b.shape[1], self.crow_t.data_ptr(), self.col_t.data_ptr(),
                                         self.index_t.data_ptr(), weight.data_ptr(), b.data_ptr(), None, out.data_ptr())
            return out
        return self.matrix_t(weight) @ b

    # row-major products of a linear layer (compiled only; kernels/products.py uses them where
    # native.usable): x (N, cols) and dL/dY (N, rows) as PyTorch holds them, no transposed copies
    def rows_mm(self, weight: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x W^T (+ bias): the forward product, (N, rows)."""
        out = x.new_empty(x.shape[0], self.shape[0])
        native.call("rows_mm", x.dtype, self.shape[0], self.shape[1], x.shape[0], self.crow.data_ptr(),
                    self.col.data_ptr(), self.index.data_ptr(), weight.data_ptr(), x.data_ptr(), native.ptr(bias),
                    out.data_ptr())
        return out

    def rows_mm_t(self, weight: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        """dL/dY W: the input gradient, (N, cols)."""
        out = gy.new_empty(gy.shape[0], self.shape[1])
        native.call("rows_mm", gy.dtype, self.shape[1], self.shape[0], gy.shape[0], self.crow_t.data_ptr(),
                    self.col_t.data_ptr(), self.index_t.data_ptr(), weight.data_ptr(), gy.data_ptr(), None,
                    out.data_ptr())
        return out

    def rows_sampled(self, gy: torch.Tensor, x: torch.Tensor, like: torch.Tensor, coo: bool = False,
                     bias_grad: bool = False):
        """dL/dW = dL/dY^T x at the kept entries (as `sampled`) from dL/dY (N, rows) and x (N, cols), and
        with `bias_grad` dL/db = the column sums of dL/dY, taken in the same pass (else None)."""
        values = gy.new_empty(self.nnz)
        gb = gy.new_empty(self.shape[0]) if bias_grad else None
        native.call("rows_sampled", gy.dtype, self.shape[0], self.shape[1], gy.shape[0], self.crow.data_ptr(),
                    self.col.data_ptr(), gy.data_ptr(), x.data_ptr(), values.data_ptr(), native.ptr(gb))
        return self._gradient(values, like, coo), gb

    def sampled(self, a: torch.Tensor, columns: torch.Tensor, like: torch.Tensor, coo: bool = False) -> torch.Tensor:
        """(a @ columns^T) at the kept entries only, shaped like the parameter, for a = dL/dY^T (rows, n) and
        columns = X^T (cols, n): the weight gradient dL/dW = dL/dY^T X of the trained entries (its other
        entries are masked anyway). Scattered into a dense zero tensor, or with `coo` a sparse COO tensor of
        the kept entries in `index` order (for the SGD step at the kept entries, kernels/update.py: no fill
        of a dense gradient, measured up to 0.6 ms a step for LeNet-300-100's fc1 as that memory is cold)."""
        if native.usable(a, columns):
            values = a.new_empty(self.nnz)
            native.fn("sampled", a.dtype)(self.shape[0], a.shape[1], self.crow.data_ptr(), self.col.data_ptr(),
                                          a.data_ptr(), columns.data_ptr(), values.data_ptr())
        else:
            pattern = self._pattern if self._pattern.dtype == a.dtype else self._pattern.to(a.dtype)
            values = torch.sparse.sampled_addmm(pattern, a, columns.t(), beta=0.0).values()
        return self._gradient(values, like, coo)

    def _gradient(self, values: torch.Tensor, like: torch.Tensor, coo: bool) -> torch.Tensor:
        """The kept entries' gradient `values` (in `index` order) as a COO tensor or scattered densely."""
        if coo:
            if self._coo_indices is None or self._coo_indices.shape[0] != like.dim():
                self._coo_indices = torch.stack(torch.unravel_index(self.index, like.shape))
            return torch.sparse_coo_tensor(self._coo_indices, values, like.shape, is_coalesced=True,
                                           check_invariants=False)
        out = torch.zeros_like(like)  # not a view: autograd then takes it as the .grad without a copy
        out.view(-1).scatter_(0, self.index, values)
        return out

