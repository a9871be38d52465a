"""The filter-basis convolution (thesis 5.4) and the conversion of a model into the interspace.

A KxK filter is phi^(o,i) = sum_n beta^(o,i)_n F(n)  (eq. 5.5), with coefficients beta (the
prunable parameter `coeff`, shape (c_out, c_in, n)) and a basis/dictionary F shared according to
the sharing plan (layers/sharing.py; F lives in `model.fb_bases`, layers/bases.py).

Training composes the spatial weight W = beta . F once per forward (a (c_out c_in, n) x (n, K^2)
matmul, no H x W factor, done two filters per row for speed: `_compose_rows`) and calls the ordinary convolution, so autograd yields exactly
eqs. 5.8-5.10: dL/dW = dL/dY * V, dL/dbeta_n = <F(n), dL/dW>, dL/dF(n) = sum_(o,i) beta_n dL/dW.
`forward_basis_first` is Algorithm 5.2 (convolve every input channel with every basis element,
then combine with the sparse beta), used to measure sparse inference.
"""
from __future__ import annotations

import math
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.kernels import native
from sparse_exp.layers.bases import BASIS_INITS, FilterBases, draw_basis
from sparse_exp.layers.sharing import SHARING_SCHEMES, BasisUse
from sparse_exp.seeding import derive_seed

# Gradients dL/dW of the composed spatial weights, kept for the training probes (measure/probes.py)
# while a layer's `record_spatial_grad` is on. Weak keys: a deleted layer takes its entry along.
SPATIAL_GRADS: "weakref.WeakKeyDictionary[nn.Module, torch.Tensor]" = weakref.WeakKeyDictionary()


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class FilterBasisConv2d(nn.Module):
    """A 2D convolution whose KxK filters are coefficients w.r.t. a (shared) filter basis.

    Mirrors nn.Conv2d's attributes (in_channels, out_channels, kernel_size, stride, padding,
    dilation, groups, bias) so describe/FLOP code treats it as a conv. `bases` is the model's
    FilterBases container and `use` names this layer's entry and split (sharing.BasisUse); the
    layer keeps a plain (unregistered) reference to the container. `owner` marks the first layer
    of a shared basis: it draws the basis in `init_parameters`."""

    PRUNABLE = "coeff"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, bases: FilterBases, use: BasisUse,
                 owner: bool = True, stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        k = _pair(kernel_size)
        if k[0] != k[1] or k[0] < 2:
            raise ValueError(f"filter bases need square KxK kernels with K > 1, got {kernel_size}")
        if groups != 1:
            raise ValueError("filter-basis convolutions support groups=1 only (every model of Tables A.1-A.8)")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.dilation = k, _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.groups = 1
        self.key, self.split, self.nc, self.owner = use.key, use.split, use.nc, owner
        object.__setattr__(self, "_bases", bases)  # a reference, not a child module
        g, n = self.basis.shape[:2]
        channels = {"layer": None, "in": self.in_channels, "out": self.out_channels}[self.split]
        if channels is not None:
            if g != math.ceil(channels / self.nc):
                raise ValueError(f"basis '{self.key}' has {g} bases, {self.split}_nc={self.nc} over {channels} channels needs {math.ceil(channels / self.nc)}")
            # Channel c uses basis c // nc: neighbouring channels share, starting at channel 1 (5.5.3.3).
            self.register_buffer("basis_index", torch.arange(channels, device=device) // self.nc, persistent=False)
        elif g != 1:
            raise ValueError(f"basis '{self.key}' has {g} bases; a layer-wide basis has 1")
        self.coeff = nn.Parameter(torch.zeros(out_channels, in_channels, n, device=device, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.record_spatial_grad = False

    # the basis ----------------------------------------------------------------------------
    @property
    def basis(self) -> nn.Parameter:
        """This layer's entry of model.fb_bases, shape (G, n, K, K)."""
        return self._bases[self.key]

    @property
    def dict_size(self) -> int:
        """n#, the number of basis/dictionary elements (K^2 for a basis)."""
        return self.coeff.shape[-1]

    @property
    def num_bases(self) -> int:
        """G, the number of bases this layer uses (> 1 only for in_nc/out_nc sharing)."""
        return self.basis.shape[0]

    def _channel_bases(self, basis: torch.Tensor) -> torch.Tensor:
        """(G, n, K^2) -> the basis of every channel of the split, (channels, n, K^2)."""
        return basis[self.basis_index]

    # composition --------------------------------------------------------------------------
    def spatial_weight(self, coeff: torch.Tensor | None = None) -> torch.Tensor:
        """W = sum_n beta_n F(n) (eqs. 5.5/5.6) as a (c_out, c_in, K, K) tensor."""
        beta = self.coeff if coeff is None else coeff
        o, i, n = beta.shape
        kh, kw = self.kernel_size
        basis = self.basis.reshape(-1, n, kh * kw)
        if self.split == "layer":
            w = _compose_rows(beta.reshape(o * i, n), basis[0])
        elif self.split == "out":  # output channel o uses basis index[o]
            w = torch.bmm(beta, self._channel_bases(basis))
        else:  # input channel i uses basis index[i]
            w = torch.bmm(beta.transpose(0, 1), self._channel_bases(basis)).transpose(0, 1)
        return w.reshape(o, i, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.spatial_weight()
        if self.record_spatial_grad and w.requires_grad:
            w.register_hook(self._keep_spatial_grad)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _keep_spatial_grad(self, grad: torch.Tensor) -> None:
        SPATIAL_GRADS[self] = grad.detach()

    @torch.no_grad()
    def forward_basis_first(self, x: torch.Tensor, coeff: torch.Tensor | None = None) -> torch.Tensor:
        """Algorithm 5.2: Z = F(n) * V_i for every input channel i and element n (a depthwise conv
        with c_in n outputs, eq. 5.7), then Y_o = sum_(i,n) beta_(o,i,n) Z_(i,n) (a 1x1 conv)."""
        beta = self.coeff if coeff is None else coeff
        o, i, n = beta.shape
        basis = self.basis
        if self.split == "out":  # every group of output channels has its own Z
            outs = []
            for g in range(self.num_bases):
                rows = (self.basis_index == g).nonzero().flatten()
                z = self._depthwise(x, basis[g].unsqueeze(0).expand(i, -1, -1, -1))
                outs.append(F.conv2d(z, beta[rows].reshape(len(rows), i * n, 1, 1)))
            y = torch.cat(outs, 1)
        else:
            per_channel = basis[0].unsqueeze(0).expand(i, -1, -1, -1) if self.split == "layer" else basis[self.basis_index]
            y = F.conv2d(self._depthwise(x, per_channel), beta.reshape(o, i * n, 1, 1))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def _depthwise(self, x: torch.Tensor, per_channel: torch.Tensor) -> torch.Tensor:
        i, n, kh, kw = per_channel.shape
        return F.conv2d(x, per_channel.reshape(i * n, 1, kh, kw), None, self.stride, self.padding, self.dilation, groups=i)

    # initialisation (models/init.py) -------------------------------------------------------
    @torch.no_grad()
    def init_parameters(self, weight_init, generator: torch.Generator) -> None:
        """Algorithm 5.1 / IP Algs. A1-A3 with `weight_init` as the spatial scheme.

        The owner of a basis first draws it from a stream of its own, (init seed, "basis", key), so
        the shared generator is consumed exactly as by the ordinary network and an SP and an IP run
        of one seed start from the same spatial draws (onb: the same filters W = phi; Algs. A1-A3
        say only how each is distributed). Then the coefficients:
        standard/random draw beta with `weight_init` on (c_out, c_in, K, K)-shaped tensors, so the
        fans are the spatial ones (n > K^2 takes further such draws, n < K^2 the first n entries
        of each filter); onb draws the spatial filters phi with `weight_init` and sets
        beta = A(B,F)^T phi (Alg. A2 line 7), so W = phi. With the standard basis and n = K^2 the
        random numbers drawn are exactly those of the ordinary convolution: IP equals SP."""
        scheme = self._bases.init_scheme
        o, i, n = self.coeff.shape
        kh, kw = self.kernel_size
        if self.owner:
            own = torch.Generator().manual_seed(derive_seed(generator.initial_seed(), "basis", self.key))
            fresh = torch.stack([draw_basis(scheme, n, kh, own) for _ in range(self.num_bases)])
            self.basis.copy_(fresh)
        draws = [_spatial_draw((o, i, kh, kw), weight_init, generator) for _ in range(math.ceil(n / (kh * kw)))]
        values = torch.cat([d.reshape(o, i, kh * kw) for d in draws], -1)[..., :n]
        if scheme == "onb":  # beta = A^T phi: for an orthonormal basis the analysis operator
            basis = self.basis.detach().float().cpu().reshape(-1, n, kh * kw)
            if self.split == "layer":
                values = values @ basis[0].T
            elif self.split == "out":
                values = torch.bmm(values, basis[self.basis_index.cpu()].transpose(1, 2))
            else:
                per = basis[self.basis_index.cpu()].transpose(1, 2)
                values = torch.bmm(values.transpose(0, 1), per).transpose(0, 1)
        self.coeff.copy_(values)
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        split = "" if self.split == "layer" else f", {self.split}_nc={self.nc}"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, basis='{self.key}' (G={self.num_bases}, n#={self.dict_size}){split}, "
                f"bias={self.bias is not None}")


# Rows composed per matrix row by `_compose_rows` (see there); measured by scripts/bench_ip.py.
COMPOSE_ROWS = 2


def _compose_rows(beta: torch.Tensor, basis: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """W = beta F for beta (M, n) and one basis F (n, K^2): M filters at once.

    As one (M, n) x (n, K^2) product with n, K^2 = 9 the BLAS runs at a fraction of its speed (the
    inner dimension is too short to fill its kernels; measured 3x slower than memory speed on VGG-16's
    512x512 layer). Viewing `rows` consecutive filters as one row multiplies by the block-diagonal
    kron(I_rows, F) instead: the same result, with wider products. `_ComposeRows` computes the
    gradients dL/dbeta = dL/dW F^T and dL/dF = beta^T dL/dW with the same wide products, directly."""
    m, n = beta.shape
    rows = COMPOSE_ROWS if rows is None else rows
    if rows <= 1 or m % rows:
        return beta @ basis
    return _ComposeRows.apply(beta, basis, rows)


def _block_diagonal(basis: torch.Tensor, rows: int) -> torch.Tensor:
    """kron(I_rows, F): `rows` copies of F on the diagonal."""
    return torch.kron(torch.eye(rows, dtype=basis.dtype, device=basis.device), basis)


class _ComposeRows(torch.autograd.Function):
    """W = beta F as (M/rows, rows n) x kron(I_rows, F), and its backward as two products of the
    same width: dL/dbeta = (dL/dW, rows filters per row) x kron(I_rows, F)^T, and
    dL/dF = sum of the diagonal (n, K^2) blocks of (beta, rows per row)^T (dL/dW, rows per row).
    The same arithmetic autograd derived through kron and mm, without its graph (reshape, kron
    and mm nodes, kron's backward). The backward is written in differentiable ops on the saved
    inputs, so double backpropagation (GraSP's Hessian-gradient product) still works.

    On CPU (float32/float64, kernels/native.py) forward and a first-order backward are one call each of
    the compiled `compose` / `compose_backward` (kernels/native.c), which pass over beta, W and the
    gradients at about memory speed: forward and backward over VGG-16's 13 layers (14.7M coefficients)
    took 42 ms instead of 102 ms, one thread, interleaved medians of 10."""

    @staticmethod
    def forward(ctx, beta: torch.Tensor, basis: torch.Tensor, rows: int) -> torch.Tensor:
        m, n = beta.shape
        ctx.rows = rows
        ctx.save_for_backward(beta, basis)
        if native.usable(beta, basis):
            w = beta.new_empty(m, basis.shape[1])
            native.fn("compose", beta.dtype)(m, n, basis.shape[1], beta.data_ptr(), basis.data_ptr(), w.data_ptr())
            return w
        return torch.mm(beta.reshape(m // rows, rows * n), _block_diagonal(basis, rows)).view(m, basis.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        beta, basis = ctx.saved_tensors
        rows = ctx.rows
        m, n = beta.shape
        k2 = basis.shape[1]
        if not torch.is_grad_enabled() and native.usable(grad.contiguous(), beta, basis):  # not double backward
            grad = grad.contiguous()
            grad_beta = beta.new_empty(m, n) if ctx.needs_input_grad[0] else None
            grad_basis = basis.new_empty(n, k2) if ctx.needs_input_grad[1] else None
            native.call("compose_backward", beta.dtype, m, n, k2, grad.data_ptr(), beta.data_ptr(), basis.data_ptr(),
                        native.ptr(grad_beta), native.ptr(grad_basis))
            return grad_beta, grad_basis, None
        grad = grad.reshape(m // rows, rows * k2)
        grad_beta = grad_basis = None
        if ctx.needs_input_grad[0]:
            grad_beta = torch.mm(grad, _block_diagonal(basis, rows).t()).view(m, n)
        if ctx.needs_input_grad[1]:
            blocks = torch.mm(beta.reshape(m // rows, rows * n).t(), grad)  # (rows n, rows K^2)
            grad_basis = blocks.view(rows, n, rows, k2).diagonal(dim1=0, dim2=2).sum(-1)
        return grad_beta, grad_basis, None


def _spatial_draw(shape, weight_init, generator) -> torch.Tensor:
    values = torch.empty(shape, dtype=torch.float32)
    weight_init(values, generator)
    return values


# conversion ---------------------------------------------------------------------------------
def fb_layers(model: nn.Module) -> Iterator[tuple[str, FilterBasisConv2d]]:
    """(name, layer) of every filter-basis convolution, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, FilterBasisConv2d):
            yield name, module


def _field(cfg, key: str, default):
    return default if cfg is None or isinstance(cfg, str) else getattr(cfg, key, default)


def to_interspace(model: nn.Module, sharing, init="standard") -> nn.Module:
    """Replace the KxK convolutions (K > 1, minus `model.fb_exempt`) of `model` by filter-basis
    convolutions, in place, following the sharing scheme; returns `model`.

    `sharing`: a SharingConfig (name, nc, dict_size, basis_weight_decay) or a scheme name;
    `init`: an InitConfig (its `basis` is used) or a basis initialisation name.
    Bases go to `model.fb_bases`, `model.fb_sharing` records the scheme. With n# = K^2 each
    converted layer computes what the convolution computed (standard basis, coefficients = its
    weights) until `initialise` draws new values; dictionaries keep the first n# standard elements.
    `sharing=none` returns the model unchanged."""
    name = sharing if isinstance(sharing, str) else sharing.name
    scheme = SHARING_SCHEMES.get(name)
    if name == "none":
        return model
    nc = int(_field(sharing, "nc", 1))
    dict_size = _field(sharing, "dict_size", None)
    basis_init = init if isinstance(init, str) else init.basis
    if basis_init not in BASIS_INITS:
        raise ConfigError(f"init.basis must be one of {', '.join(BASIS_INITS)}; got '{basis_init}'")
    if hasattr(model, "fb_bases"):
        raise ValueError("the model is in the interspace already")
    plan = scheme.plan(model, nc)
    if not plan:  # e.g. LeNet-300-100: the run would be the spatial one under an interspace name
        raise ConfigError(f"sharing={name}: the model has no KxK convolution with K > 1 that could become a "
                          "filter-basis convolution; use sharing=none")
    bases = FilterBases(basis_init, bool(_field(sharing, "basis_weight_decay", False)))
    for conv_name, use in plan.items():
        conv = model.get_submodule(conv_name)
        if conv.padding_mode != "zeros":
            raise ValueError(f"'{conv_name}': filter-basis convolutions support zero padding only")
        k = conv.kernel_size[0]
        n = int(dict_size) if dict_size else k * k
        if n != k * k and basis_init != "random":
            raise ConfigError(
                f"sharing.dict_size={n} differs from K^2={k * k} ('{conv_name}'): init.basis={basis_init} needs a basis; "
                "use init=random for dictionaries (section 5.5.4)"
            )
        channels = {"layer": 1, "in": conv.in_channels, "out": conv.out_channels}[use.split]
        groups = math.ceil(channels / use.nc) if use.split != "layer" else 1
        owner = use.key not in bases
        if owner:
            bases.add(use.key, groups, n, k, dtype=conv.weight.dtype, device=conv.weight.device)
        elif tuple(bases[use.key].shape) != (groups, n, k, k):
            raise ValueError(f"'{conv_name}' cannot share basis '{use.key}' of shape {tuple(bases[use.key].shape)}")
        layer = FilterBasisConv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, bases=bases, use=use, owner=owner,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            flat = conv.weight.reshape(conv.out_channels, conv.in_channels, k * k)
            layer.coeff.copy_(flat @ bases[use.key][0].reshape(n, k * k).T)  # analysis w.r.t. the start basis
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        parent_name, _, child = conv_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    model.fb_bases = bases
    model.fb_sharing = name
    return model
