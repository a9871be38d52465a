"""Sparse kernels for training masked networks (`trainer.sparse_kernels`): kernels/plan.py decides,
kernels/products.py computes, kernels/csr.py holds a mask's CSR structure, kernels/update.py steps
SGD at the kept entries."""
from sparse_exp.kernels.plan import MODES, SparseKernels

__all__ = ["MODES", "SparseKernels"]
