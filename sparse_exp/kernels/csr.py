"""The CSR structure of one masked weight: where the kept entries are, in both orientations.

A weight of shape (rows, cols) (a linear layer's (out, in); a convolution's (c_out, c_in K^2)) with
mask m keeps nnz entries. The structure stores their flat positions in row-major order (`index`,
which is CSR order) with CSR's row pointers and column indices, and the same for the transpose
(`index_t`, the kept entries in column-major order), so each step builds W and W^T as CSR tensors
by gathering nnz values from the dense parameter (`index_select`, 4x faster than `w[index]`): no dense -> sparse conversion per step. The
structure changes only when the mask does (SET, RigL, GMP, LTH rounds rebuild it).
"""
from __future__ import annotations

import warnings

import torch

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

    def sampled(self, a: torch.Tensor, b: torch.Tensor, like: torch.Tensor, coo: bool = False) -> torch.Tensor:
        """(a @ b) at the kept entries only, shaped like the parameter: the weight gradient
        dL/dW = dL/dY^T X of the trained entries (its other entries are masked anyway). Scattered into
        a dense zero tensor, or with `coo` a sparse COO tensor of the kept entries in `index` order (for
        the SGD step at the kept entries, kernels/update.py: no fill of a dense gradient, measured up to
        0.6 ms a step for LeNet-300-100's fc1 as that memory is cold)."""
        pattern = self._pattern if self._pattern.dtype == a.dtype else self._pattern.to(a.dtype)
        values = torch.sparse.sampled_addmm(pattern, a, b, beta=0.0).values()
        if coo:
            if self._coo_indices is None or self._coo_indices.shape[0] != like.dim():
                self._coo_indices = torch.stack(torch.unravel_index(self.index, like.shape))
            return torch.sparse_coo_tensor(self._coo_indices, values, like.shape, is_coalesced=True,
                                           check_invariants=False)
        out = torch.zeros_like(like)  # not a view: autograd then takes it as the .grad without a copy
        out.view(-1).scatter_(0, self.index, values)
        return out
