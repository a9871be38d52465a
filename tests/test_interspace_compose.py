"""The composition W = beta F of the filter-basis convolution (layers/interspace.py, `_ComposeRows`:
a hand-written backward for speed) against references written independently of it: plain
autograd through an einsum over every filter's own basis, and the kron(I_2, F) product through
autograd that the layer used before. Forward outputs and the gradients of the coefficients, the
bases and the bias must agree to float rounding, for every split (one basis per layer, per
input-channel group, per output-channel group), for bases (n# = K^2) and dictionaries (n# != K^2),
in float32 and float64, on the compiled kernels (kernels/native.c) and on PyTorch's products."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.layers import interspace
from sparse_exp.layers.interspace import _compose_rows, fb_layers, to_interspace
from sparse_exp.models import declare, initialise

EPS = {torch.float32: 1e-5, torch.float64: 1e-11}  # float rounding of sums in another order


def close(got, expected):
    """Equal up to rounding: entries within EPS of the tensor's largest magnitude (long sums such as
    dL/dF over thousands of filters round differently in another order)."""
    eps = EPS[expected.dtype]
    torch.testing.assert_close(got, expected, rtol=eps, atol=eps * max(1.0, float(expected.detach().abs().max())))


class _Two(nn.Module):
    def __init__(self, c_in, c_mid, c_out):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_mid, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False)
        self.fc = nn.Linear(1, 1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


def _model(scheme, nc, dict_size, dtype, channels):
    model = declare(_Two(*channels), medium_groups={"conv1": 0, "conv2": 0}, classifier_name="fc")
    cfg = SimpleNamespace(name=scheme, nc=nc, dict_size=dict_size, basis_weight_decay=False)
    model = to_interspace(model, cfg, "random" if dict_size else "onb")
    initialise(model, "kaiming_normal", 0)
    with torch.no_grad():  # a trained-looking basis (not orthonormal) and a non-zero bias
        gen = torch.Generator().manual_seed(1)
        for p in model.fb_bases.values():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
        model.conv1.bias.copy_(torch.randn(model.conv1.bias.shape, generator=gen))
    return model.to(dtype)


def _reference_weight(layer, coeff, basis):
    """W[o, i] = sum_n coeff[o, i, n] F_(o, i)(n), with F_(o, i) the basis of filter (o, i)."""
    o, i, n = coeff.shape
    flat = basis.reshape(basis.shape[0], n, -1)
    if layer.split == "layer":
        per_filter = flat[0].expand(o, i, n, flat.shape[-1])
    elif layer.split == "out":
        per_filter = flat[torch.arange(o) // layer.nc].unsqueeze(1).expand(o, i, n, flat.shape[-1])
    else:
        per_filter = flat[torch.arange(i) // layer.nc].unsqueeze(0).expand(o, i, n, flat.shape[-1])
    return torch.einsum("oin,oink->oik", coeff, per_filter).reshape(o, i, *layer.kernel_size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dict_size", [None, 5, 13])  # None: a basis, n# = K^2 = 9; else a dictionary
@pytest.mark.parametrize("scheme,nc", [("fine", 1), ("medium", 1), ("in_nc", 2), ("out_nc", 3)])
@pytest.mark.parametrize("channels", [(4, 6, 8), (3, 5, 7)])  # (3, 5, 7): odd filter counts (one filter per row)
def test_layer_outputs_and_gradients_equal_the_plain_einsum_composition(scheme, nc, dict_size, dtype, channels,
                                                                        kernel_impl):
    model = _model(scheme, nc, dict_size, dtype, channels)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, channels[0], 9, 9, generator=gen, dtype=dtype)
    for _, layer in fb_layers(model):
        coeff = layer.coeff.detach().clone().requires_grad_()
        basis = layer.basis.detach().clone().requires_grad_()
        bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_()
        expected = F.conv2d(x, _reference_weight(layer, coeff, basis), bias, layer.stride, layer.padding)
        got = layer(x)
        close(got, expected)
        g = torch.randn(got.shape, generator=gen, dtype=dtype)
        refs = torch.autograd.grad(expected, [coeff, basis] + ([bias] if bias is not None else []), g)
        model.zero_grad(set_to_none=True)
        got.backward(g)
        close(layer.coeff.grad, refs[0])
        close(layer.basis.grad, refs[1])
        if bias is not None:
            close(layer.bias.grad, refs[2])
        x = F.relu(got.detach())


def _kron_through_autograd(beta, basis, rows):
    """The composition as the layer computed it before `_ComposeRows`: autograd through kron and mm."""
    m, n = beta.shape
    if rows <= 1 or m % rows:
        return beta @ basis
    block = torch.kron(torch.eye(rows, dtype=basis.dtype), basis)
    return (beta.reshape(m // rows, rows * n) @ block).reshape(m, basis.shape[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [2, 3, 4])
@pytest.mark.parametrize("m, n, k2", [(4096, 9, 9), (36, 5, 9), (24, 16, 9), (120, 25, 25)])
def test_compose_rows_equals_einsum_and_the_previous_kron_product(m, n, k2, rows, dtype, kernel_impl):
    gen = torch.Generator().manual_seed(0)
    beta = torch.randn(m, n, generator=gen, dtype=dtype, requires_grad=True)
    basis = torch.randn(n, k2, generator=gen, dtype=dtype, requires_grad=True)
    g = torch.randn(m, k2, generator=gen, dtype=dtype)
    w = _compose_rows(beta, basis, rows)
    got = torch.autograd.grad(w, (beta, basis), g)
    for reference in (torch.einsum("mn,nk->mk", beta, basis), _kron_through_autograd(beta, basis, rows)):
        expected = torch.autograd.grad(reference, (beta, basis), g)
        close(w, reference)
        close(got[0], expected[0])
        close(got[1], expected[1])


def test_compose_rows_is_used_and_twice_differentiable(kernel_impl):
    """The hand-written backward is itself differentiable (GraSP's double backpropagation; compiled, the
    first-order backward is native.c's and the second order PyTorch's)."""
    gen = torch.Generator().manual_seed(0)
    beta = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    basis = torch.randn(4, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert type(_compose_rows(beta, basis, 2).grad_fn).__name__.startswith("_ComposeRows")
    assert torch.autograd.gradcheck(lambda b, f: _compose_rows(b, f, 2), (beta, basis))
    assert torch.autograd.gradgradcheck(lambda b, f: _compose_rows(b, f, 2), (beta, basis))


def test_only_the_needed_gradients_are_computed():
    """A frozen basis (requires_grad False) gets no gradient and the coefficients still get theirs."""
    gen = torch.Generator().manual_seed(0)
    beta = torch.randn(8, 9, generator=gen, requires_grad=True)
    basis = torch.randn(9, 9, generator=gen)
    (_compose_rows(beta, basis, interspace.COMPOSE_ROWS) * 2).sum().backward()
    torch.testing.assert_close(beta.grad, 2 * basis.sum(1).expand(8, 9))
