"""Filter bases and dictionaries (thesis 5.4.1, 5.4.3; IP appendix G): where they live, how they start.

All bases of a model sit in ONE container, `model.fb_bases` (a ParameterDict). Each entry is a
Parameter of shape (G, n, K, K): G bases (G > 1 only for in_nc/out_nc sharing inside a layer), each
of n elements F(1..n) in R^{KxK}; n = K^2 makes it a basis, otherwise a dictionary (section 5.5.4).
Filter-basis layers refer to their entry by key without registering it, so `named_parameters`,
`state_dict`, `deepcopy` and `.to(device)` see every basis exactly once.

Basis initialisations of Algorithm 5.1 / IP Algorithms A1-A3 (the coefficients are drawn by the
layer, see interspace.py):
* standard: F(k) = E(i_k, j_k), the standard basis (Alg. A1);
* onb:      Gram-Schmidt (QR with positive diagonal) of K^2 i.i.d. N(0,1) filters (Alg. A2);
* random:   n i.i.d. N(0,1) filters rescaled to pixel-wise sample mean 1/n and sample variance
            1/n - 1/n^2 (Alg. A3, eq. A.68): then sum_n beta_n F(n) has the mean and variance of
            beta whatever n is (derivation eqs. A.69-A.74).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

BASIS_INITS = ("standard", "onb", "random")


def standard_basis(n: int, kernel: int) -> torch.Tensor:
    """(n, K, K): the first min(n, K^2) standard basis elements E(i_k, j_k) (row-major), zeros after."""
    return torch.eye(n, kernel * kernel).reshape(n, kernel, kernel)


def onb_basis(kernel: int, generator: torch.Generator) -> torch.Tensor:
    """(K^2, K, K): a random orthonormal basis, Gram-Schmidt of i.i.d. N(0,1) filters (Alg. A2, line 3-4).

    QR of the matrix whose columns are the flattened filters equals Gram-Schmidt once the signs are
    fixed so that R has a positive diagonal."""
    kk = kernel * kernel
    raw = torch.randn(kk, kk, generator=generator, dtype=torch.float32).double()  # row k = filter k
    q, r = torch.linalg.qr(raw.T)
    q = q * torch.sign(torch.diagonal(r))  # column k = Gram-Schmidt(filter 1..k)
    return q.T.reshape(kk, kernel, kernel).float()


def random_dictionary(n: int, kernel: int, generator: torch.Generator) -> torch.Tensor:
    """(n, K, K): i.i.d. N(0,1) filters rescaled pixel-wise (Alg. A3 line 5, eq. A.68):
    F = sqrt(1/n - 1/n^2) * (F~ - mean) / std + 1/n with the population mean/std over the n filters."""
    raw = torch.randn(n, kernel, kernel, generator=generator, dtype=torch.float32).double()
    if n == 1:  # variance 1/n - 1/n^2 = 0: the single element is the all-ones filter
        return torch.ones(1, kernel, kernel)
    mean = raw.mean(0, keepdim=True)
    std = raw.std(0, unbiased=False, keepdim=True)
    scaled = math.sqrt(1.0 / n - 1.0 / n**2) * (raw - mean) / std + 1.0 / n
    return scaled.float()


def draw_basis(scheme: str, n: int, kernel: int, generator: torch.Generator) -> torch.Tensor:
    """One basis/dictionary (n, K, K) of `scheme`; standard and onb need n = K^2."""
    if scheme == "standard":
        return standard_basis(n, kernel)
    if scheme == "onb":
        return onb_basis(kernel, generator)
    if scheme == "random":
        return random_dictionary(n, kernel, generator)
    raise ValueError(f"unknown basis initialisation '{scheme}'; choose one of {', '.join(BASIS_INITS)}")


def mean_abs_cosine(basis: torch.Tensor) -> torch.Tensor:
    """Eq. A.1 for each of the G bases of a (G, n, K, K) tensor: the mean |cos| over the
    n(n-1)/2 pairs of distinct elements; returns (G,) (zeros for n = 1)."""
    g, n = basis.shape[:2]
    flat = basis.detach().reshape(g, n, -1).double()
    unit = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    cos = (unit @ unit.transpose(1, 2)).abs()
    if n < 2:
        return torch.zeros(g, dtype=torch.float64)
    iu = torch.triu_indices(n, n, offset=1)
    return cos[:, iu[0], iu[1]].mean(-1)


class FilterBases(nn.ParameterDict):
    """The model's filter bases, key -> Parameter (G, n, K, K).

    `init_scheme` is the basis initialisation (standard | onb | random); each basis is drawn by the
    first layer that uses it (module order), so a shared basis is initialised once (section 5.4.3.2).
    `weight_decay=False` flags every basis `_sx_no_decay` (appendix B.3 default; training/optim.py)."""

    def __init__(self, init_scheme: str = "standard", weight_decay: bool = False):
        super().__init__()
        if init_scheme not in BASIS_INITS:
            raise ValueError(f"unknown basis initialisation '{init_scheme}'; choose one of {', '.join(BASIS_INITS)}")
        self.init_scheme = init_scheme
        self.weight_decay = bool(weight_decay)

    def add(self, key: str, groups: int, n: int, kernel: int, *, dtype=None, device=None) -> nn.Parameter:
        """A new basis entry, set to the (truncated/padded) standard basis until initialised."""
        if key in self:
            raise KeyError(f"filter basis '{key}' exists already")
        value = standard_basis(n, kernel).to(dtype=dtype or torch.float32, device=device)
        self[key] = nn.Parameter(value.unsqueeze(0).repeat(groups, 1, 1, 1))
        self._flag()
        return self[key]

    def _flag(self) -> None:
        for p in self.values():
            p._sx_no_decay = not self.weight_decay

    def init_parameters(self, weight_init, generator) -> None:
        """Nothing to draw here: the owning layers drew every basis (models/init.py calls this)."""

    def numel(self) -> int:
        return sum(p.numel() for p in self.values())

    def __deepcopy__(self, memo):
        # Parameter.__deepcopy__ drops attributes such as _sx_no_decay: copy, then flag again.
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        new._flag()
        return new
