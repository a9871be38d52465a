"""The few vector primitives COPS needs, on two backends.

The solver runs on the device of its input: `NumpyOps` on the CPU (numpy on the shared-memory
torch tensors), `TorchOps` on any other torch device (CUDA). Both compute the same values (every
elementwise step is one correctly rounded operation), so the two backends return the same masks.

Nothing is ever sorted in full: order statistics use partition-based selection (numpy.partition on
the CPU, torch.kthvalue elsewhere); on large CPU vectors the order statistic is first bracketed by a
fixed-seed random sample and then found exactly inside the (small) bracket.

Operations that read the same in numpy and torch (`x[idx]`, `mask[idx] = True`, `len(x)` of the
flat vectors) are written inline by the callers and are not part of this interface.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

SAMPLE = 1 << 16  # subsample size for quantile brackets and the lam* estimate
SMALL = 1 << 17  # below this size everything is evaluated directly
EPS64 = np.finfo(np.float64).eps  # bounds the rounding of s0 + lam s1 and of the dual values


class NumpyOps:
    """CPU: numpy on the (shared-memory) torch tensors; numpy's partition/compress are the fastest
    single-threaded primitives available."""

    def __init__(self):
        self._rng_cache: dict[tuple[int, int], np.ndarray] = {}

    def asarray(self, t: torch.Tensor):
        return t.detach().to(torch.float64).contiguous().numpy()

    def to_torch(self, mask) -> torch.Tensor:
        return torch.from_numpy(mask)

    # elementwise
    def axpy(self, s0, s1, lam: float):
        """s0 + lam * s1: mul then add, each correctly rounded (the same values as `TorchOps`)."""
        out = np.multiply(s1, lam)
        return np.add(out, s0, out=out)

    def min_max(self, a, b):
        """(elementwise min, elementwise max) of a and b; the max overwrites b."""
        return np.minimum(a, b), np.maximum(a, b, out=b)

    # reductions
    def count(self, mask) -> int:
        return int(np.count_nonzero(mask))

    def sum(self, x) -> float:
        return float(np.sum(x))

    def masked_sum(self, x, mask) -> float:
        return float(np.sum(np.compress(mask, x)))

    def compress(self, mask, x):
        return np.compress(mask, x)

    def nonzero(self, mask):
        return np.flatnonzero(mask)

    def zeros_bool(self, n: int, like):
        return np.zeros(n, dtype=bool)

    def copy(self, x):
        return x.copy()

    def abs_max(self, x) -> float:
        """max |x_i|; NaN if x holds a NaN."""
        return max(abs(float(np.max(x))), abs(float(np.min(x)))) if x.size else 0.0

    # order statistics
    def kth(self, x, k: int) -> float:
        """k-th smallest value (1-based), exact."""
        n = x.size
        if n <= SMALL:
            return float(np.partition(x, k - 1)[k - 1])
        lo, hi = self.sample_bounds(x, k, exact_ok=False)
        below = int(np.count_nonzero(x < lo)) if lo > -math.inf else 0
        if below < k:
            # one comparison per finite bound: each is a full pass over a large vector
            if lo > -math.inf and hi < math.inf:
                band = np.compress((x >= lo) & (x <= hi), x)
            elif lo > -math.inf:
                band = np.compress(x >= lo, x)
            elif hi < math.inf:
                band = np.compress(x <= hi, x)
            else:
                band = x
            r = k - below
            if r <= band.size:
                return float(np.partition(band, r - 1)[r - 1])
        return float(np.partition(x, k - 1)[k - 1])  # the sample missed (rare): exact fallback

    def sample_bounds(self, x, k: int, exact_ok: bool = True) -> tuple[float, float]:  # pragma: no mutate block (docs/testing.md)
        """(lo, hi) that bracket the k-th smallest value of x with high probability (not verified)."""
        n = x.size
        if n <= SMALL and exact_ok:
            t = self.kth(x, k)
            return t, t
        m = min(SAMPLE, n)
        sample = np.sort(x[self._sample_idx(n, m)])
        p = k / n
        r = p * m
        margin = 5.0 * math.sqrt(max(m * p * (1 - p), 1.0)) + 4
        i_lo, i_hi = int(math.floor(r - margin)), int(math.ceil(r + margin))
        lo = float(sample[i_lo]) if i_lo >= 0 else -math.inf
        hi = float(sample[i_hi]) if i_hi < m else math.inf
        return lo, hi

    def _sample_idx(self, n: int, m: int) -> np.ndarray:  # pragma: no mutate block (docs/testing.md)
        """A fixed random sample of m of n indices (sorted: a cache-friendly gather)."""
        key = (n, m)
        if key not in self._rng_cache:
            self._rng_cache[key] = np.sort(np.random.default_rng(12345).integers(0, n, m))
        return self._rng_cache[key]


class TorchOps:
    """Any torch device (CUDA): the same primitives in torch."""

    def asarray(self, t: torch.Tensor):
        return t.detach().to(torch.float64).contiguous()

    def to_torch(self, mask) -> torch.Tensor:
        return mask

    def axpy(self, s0, s1, lam: float):
        # mul then add, each correctly rounded: the same values as the numpy backend
        return torch.mul(s1, lam).add_(s0)

    def min_max(self, a, b):
        """(elementwise min, elementwise max) of a and b; the max overwrites b."""
        return torch.minimum(a, b), torch.maximum(a, b, out=b)

    def count(self, mask) -> int:
        return int(torch.count_nonzero(mask))

    def sum(self, x) -> float:
        return float(x.sum())

    def masked_sum(self, x, mask) -> float:
        return float(x[mask].sum())

    def compress(self, mask, x):
        return x[mask]

    def nonzero(self, mask):
        return torch.nonzero(mask).squeeze(1)

    def zeros_bool(self, n: int, like):
        return torch.zeros(n, dtype=torch.bool, device=like.device)

    def copy(self, x):
        return x.clone()

    def abs_max(self, x) -> float:
        """max |x_i|; NaN if x holds a NaN."""
        return max(abs(float(x.max())), abs(float(x.min()))) if x.numel() else 0.0

    def kth(self, x, k: int) -> float:
        return float(torch.kthvalue(x, k).values)

    def sample_bounds(self, x, k: int, exact_ok: bool = True) -> tuple[float, float]:  # pragma: no mutate block (docs/testing.md)
        t = self.kth(x, k)
        return t, t


def ops_for(device: torch.device, backend: Optional[str]):
    """The backend for tensors on `device`: numpy on the CPU, torch elsewhere, unless forced."""
    if backend is None:
        backend = "numpy" if device.type == "cpu" else "torch"
    if backend == "numpy":
        if device.type != "cpu":
            raise ValueError("the numpy backend works on CPU tensors only")
        return NumpyOps()
    if backend == "torch":
        return TorchOps()
    raise ValueError(f"unknown COPS backend '{backend}' (numpy | torch)")
