"""The compiled kernels (sparse_exp/kernels/native.c) against dense PyTorch products of the masked weight:
every kernel, both dtypes, batch sizes around the 8-sample blocks and the 8 x 8 tiles (1, 7, 8, 13, 29), widths
that are not multiples of 8, empty rows and an empty mask; the cached build, and the fallback to PyTorch's
operations where no compiler is found. Products inside layers and SGD are compared, compiled and not, in
tests/test_sparse_kernels.py."""
from __future__ import annotations

import logging

import pytest
import torch

from sparse_exp.kernels import native
from sparse_exp.kernels.csr import CSRStructure

pytestmark = pytest.mark.skipif(native.lib() is None, reason="no C compiler: the compiled kernels are not built here")

# (rows, cols, density): LeNet-like, narrow, wide and the corner cases
SHAPES = [(20, 30, 0.2), (3, 17, 0.5), (17, 3, 0.5), (9, 40, 0.0), (12, 16, 1.0)]
BATCHES = [1, 7, 8, 13, 29]


def _layer(rows, cols, density, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, cols, generator=gen) < density
    mask[rows // 2] = False  # an empty row in every mask
    w = torch.randn(rows, cols, generator=gen, dtype=dtype) * mask
    return w, mask, CSRStructure(mask)


def _randn(seed, dtype, *shapes):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=dtype) for shape in shapes]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("rows, cols, density", SHAPES)
def test_row_major_products(rows, cols, density, n, dtype):
    """rows_mm (y = x W^T + b), rows_mm_t (dL/dX = dL/dY W) and rows_sampled (dL/dW at the kept entries, dL/db)."""
    w, mask, s = _layer(rows, cols, density, dtype)
    x, gy, bias = _randn(1, dtype, (n, cols), (n, rows), (rows,))
    torch.testing.assert_close(s.rows_mm(w, x, bias), x @ w.t() + bias, **_tol(dtype))
    torch.testing.assert_close(s.rows_mm(w, x), x @ w.t(), **_tol(dtype))
    torch.testing.assert_close(s.rows_mm_t(w, gy), gy @ w, **_tol(dtype))
    gw, gb = s.rows_sampled(gy, x, w, bias_grad=True)
    torch.testing.assert_close(gw, (gy.t() @ x) * mask, **_tol(dtype))
    torch.testing.assert_close(gb, gy.sum(0), **_tol(dtype))
    coo, none = s.rows_sampled(gy, x, w, coo=True)
    assert none is None and coo.is_sparse and coo._nnz() == int(mask.sum())
    torch.testing.assert_close(coo.to_dense(), gw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 13, 600])  # 600 > 512: the output is added up in chunks of 512 columns
@pytest.mark.parametrize("rows, cols, density", SHAPES)
def test_column_layout_products(rows, cols, density, n, dtype):
    """mm (W b + bias), mm_t (W^T b) and sampled on the (features, n) layout of im2col columns."""
    w, mask, s = _layer(rows, cols, density, dtype)
    b, g, bias = _randn(2, dtype, (cols, n), (rows, n), (rows,))
    torch.testing.assert_close(s.mm(w, b, bias), w @ b + bias[:, None], **_tol(dtype))
    torch.testing.assert_close(s.mm_t(w, g), w.t() @ g, **_tol(dtype))
    torch.testing.assert_close(s.sampled(g, b, w), (g @ b.t()) * mask, **_tol(dtype))


def test_build_is_cached_per_source_and_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_EXP_CACHE", str(tmp_path))
    first = native.build()
    assert first.parent == tmp_path and first.name.startswith("native-") and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == stamp  # not compiled again
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


def test_without_a_compiler_pytorch_computes_the_same(tmp_path, monkeypatch, caplog):
    """A failing compiler (here `false`) leaves lib() None, logged once; the products then run on PyTorch's
    CSR operations with the same results."""
    w, mask, s = _layer(20, 30, 0.2, torch.float32)
    x = torch.randn(13, 30)
    compiled = s.mm(w, x.t().contiguous())
    monkeypatch.setenv("SPARSE_EXP_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    with pytest.raises(RuntimeError, match="false failed"):
        native.build()
    monkeypatch.delitem(native._state, "lib")
    with caplog.at_level(logging.INFO, logger="sparse_exp"):
        assert native.lib() is None and not native.usable(w)
    assert "compiled kernels unavailable" in caplog.text
    torch.testing.assert_close(s.mm(w, x.t().contiguous()), compiled)
    monkeypatch.setenv("CC", "gcc")
    monkeypatch.setenv("SPARSE_EXP_NATIVE", "0")  # switched off by the environment
    monkeypatch.delitem(native._state, "lib")
    assert native.lib() is None


def test_only_contiguous_cpu_tensors_of_one_float_dtype_are_usable():
    a = torch.randn(4, 5)
    assert native.usable(a, torch.randn(5))
    assert not native.usable(a.t())  # a strided view
    assert not native.usable(a, a.double())
    assert not native.usable(a.half())
    assert not native.usable(torch.arange(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m, n, k2", [(1, 9, 9), (37, 9, 9), (600, 9, 9), (37, 5, 9), (37, 13, 9), (20, 4, 4)])
def test_interspace_composition(m, n, k2, dtype):
    """compose (W = beta F, layers/interspace.py) and compose_backward (dL/dbeta = dL/dW F^T, dL/dF =
    beta^T dL/dW; 600 filters span three of its 256-filter blocks) against dense products; the 3 x 3
    case with n = 9 has its own loops."""
    beta, basis, grad = _randn(3, dtype, (m, n), (n, k2), (m, k2))
    w = torch.empty(m, k2, dtype=dtype)
    native.fn("compose", dtype)(m, n, k2, beta.data_ptr(), basis.data_ptr(), w.data_ptr())
    torch.testing.assert_close(w, beta @ basis, **_tol(dtype))
    grad_beta, grad_basis = torch.empty(m, n, dtype=dtype), torch.empty(n, k2, dtype=dtype)
    native.call("compose_backward", dtype, m, n, k2, grad.data_ptr(), beta.data_ptr(), basis.data_ptr(),
                grad_beta.data_ptr(), grad_basis.data_ptr())
    torch.testing.assert_close(grad_beta, grad @ basis.t(), **_tol(dtype))
    torch.testing.assert_close(grad_basis, beta.t() @ grad, **_tol(dtype))
    only_basis = torch.empty(n, k2, dtype=dtype)  # a frozen coefficient tensor: dL/dbeta not asked for
    native.call("compose_backward", dtype, m, n, k2, grad.data_ptr(), beta.data_ptr(), basis.data_ptr(), None,
                only_basis.data_ptr())
    torch.testing.assert_close(only_basis, grad_basis)
