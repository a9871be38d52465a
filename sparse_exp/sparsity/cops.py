"""COPS, Algorithm 4.1 of the thesis: combine a target and a control pruning score.

Problem (4.11), with scores in the *minimisation* convention of section 4.3.1 (s = -importance,
both normalised to ||s||_1 = 1, appendix A.4)::

    min_{m in {0,1}^D, |m|_0 <= d}  S0(m) = <s0, m>   such that   S1(m) = <s1, m> <= kappa

The solver works on the LP relaxation (4.13) (m in [0,1]^D, |m|_1 <= d) through its dual
(Lemma 4.3.1)::

    g(lam) = sum_{i in I_lam} (s0_i + lam * s1_i) - lam * kappa,    I_lam = d-idxmin{ s0_i + lam s1_i < 0 }

which is concave with superderivative g'(lam) = S1(m_lam) - kappa (Lemma 4.3.2). kappa_min is the
smallest reachable control score (4.27), kappa = alpha * kappa_min (4.28). If g'(0) <= 0 the
constraint is inactive and lam* = 0 (Algorithm 4.1, line 3); otherwise lam* is found by bisection
on [0, lam_plus] to eps_n (lines 7-19), where lam_plus is chosen automatically as the smallest power
of two with g'(lam_plus) <= 0. The result is projected on m_plus (feasible, S1 <= kappa, the
default) or m_minus (slightly infeasible, better target score), Theorem 4.3.1.

Exactness. After the eps-bisection, the final bracket is resolved to the kink lam* of g by a few
cutting-plane steps (intersection of the two supporting lines of g at the bracket ends), so m_plus
and m_minus are exactly the masks of Theorem 4.3.1: both minimise s0 + lam* s1, they differ by one
swap, and the relaxed optimum p* = S0(gamma m_minus + (1 - gamma) m_plus) with S1 = kappa is the
LP optimum to rounding (checked against scipy's HiGHS in tests/test_cops.py).

Speed (15.3M weights in well under 3 s on one core). Nothing is ever sorted in full:

* selections (the d smallest negatives) use partition-based selection (numpy.partition on the CPU,
  torch.kthvalue elsewhere); on large CPU vectors the order statistic is first bracketed by a
  fixed-seed random sample and then found exactly inside the (small) bracket;
* bisection works on a shrinking candidate set. For lam in [a, b] every value v_i(lam) =
  s0_i + lam s1_i lies between its values at the ends, so the capped d-th order statistic
  T(lam) = min(d-th smallest of v(lam), 0) lies between the d-th order statistics TL, TH of those
  elementwise bounds. Indices whose upper bound is below TL are in I_lam for every lam in [a, b],
  indices whose lower bound is above TH never are; only the rest (the candidates) are looked at
  again. A cheap estimate of lam* on a fixed random subsample of the scores gives a narrow first
  bracket [a, b]; every Algorithm-4.1 midpoint outside it has a sign known from the monotonicity
  of g' and is not evaluated.

Ties are broken by the lower index everywhere (as `sparsity.select.topk_mask`), so the result is
a deterministic function of the inputs, the same on both backends (up to the rounding of sums).

Degenerate inputs (defined answers, reported in `CopsResult.messages`):

* d = 0 (q = 1): the empty mask. d >= D (q = 0): every entry with a negative score may be kept.
* an importance vector that is all zero cannot be normalised: it is treated as carrying no
  information (s = 0). A zero control score gives kappa_min = 0 and hence the target-only mask; with
  a zero target score every entry ties at lam* = 0 and m+ is the shortest prefix of the control
  order with S1 <= kappa (an LP optimum; every feasible mask has S0 = 0).
* kappa_min = 0 (no entry has a positive control importance): kappa = alpha * kappa_min = 0 is the
  alpha = 0 case, i.e. no constraint; the target-only mask is returned.
* alpha = 0 is the unconstrained problem (section 4.3.4: "for alpha = 0 the constraint is inactive"),
  so it returns the target-only mask m(0) exactly, even if S1(m(0)) > 0.
* fewer than d negative values: problems (4.7)/(4.11) never keep an entry whose score is >= 0, so
  the mask keeps fewer than d entries (said in the messages).
* an explicit kappa below kappa_min is infeasible (ValueError); kappa == kappa_min violates Slater's
  condition and gives the limit mask lam -> infinity (control-only, ties broken by the target).
* NaN/inf scores raise ValueError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

EPS_N = 1e-6  # appendix A.4
_LAM_MIN_EXP, _LAM_MAX_EXP = -60, 80  # search range of the automatic upper bound lam_plus = 2^j
_SAMPLE = 1 << 16  # subsample size for quantile brackets and the lam* estimate
_SMALL = 1 << 17  # below this size everything is evaluated directly
_U = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------------
# backends: the few vector primitives the algorithm needs
# ---------------------------------------------------------------------------------------------
class _NumpyOps:
    """CPU: numpy on the (shared-memory) torch tensors; numpy's partition/compress are the fastest
    single-threaded primitives available."""

    name = "numpy"

    def __init__(self):
        self._rng_cache: dict[tuple[int, int], np.ndarray] = {}

    def asarray(self, t: torch.Tensor):
        return t.detach().to(torch.float64).contiguous().numpy()

    def sample_idx(self, n: int, m: int) -> np.ndarray:
        key = (n, m)
        if key not in self._rng_cache:
            self._rng_cache[key] = np.sort(np.random.default_rng(12345).integers(0, n, m))
        return self._rng_cache[key]

    # elementwise
    def axpy(self, s0, s1, lam: float, out=None):
        if out is None:
            out = np.empty_like(s0)
        np.multiply(s1, lam, out=out)
        np.add(out, s0, out=out)
        return out

    def minimum(self, a, b, out=None):
        return np.minimum(a, b, out=out)

    def maximum(self, a, b, out=None):
        return np.maximum(a, b, out=out)

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

    def take(self, x, idx):
        return x[idx]

    def first_true(self, mask, r: int):
        return np.flatnonzero(mask)[:r]

    def zeros_bool(self, n: int, like):
        return np.zeros(n, dtype=bool)

    def set_true(self, mask, idx) -> None:
        mask[idx] = True

    def copy(self, x):
        return x.copy()

    def abs_max(self, x) -> float:
        """max |x_i|; NaN if x holds a NaN."""
        return max(abs(float(np.max(x))), abs(float(np.min(x)))) if x.size else 0.0

    def kth(self, x, k: int) -> float:
        """k-th smallest value (1-based), exact."""
        n = x.size
        if n <= _SMALL:
            return float(np.partition(x, k - 1)[k - 1])
        lo, hi = self.sample_bounds(x, k, exact_ok=False)
        below = int(np.count_nonzero(x < lo)) if lo > -math.inf else 0
        if below < k:
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

    def sample_bounds(self, x, k: int, exact_ok: bool = True) -> tuple[float, float]:
        """(lo, hi) that bracket the k-th smallest value of x with high probability (not verified)."""
        n = x.size
        if n <= _SMALL and exact_ok:
            t = self.kth(x, k)
            return t, t
        m = min(_SAMPLE, n)
        sample = np.sort(x[self.sample_idx(n, m)])
        p = k / n
        r = p * m
        margin = 5.0 * math.sqrt(max(m * p * (1 - p), 1.0)) + 4
        i_lo, i_hi = int(math.floor(r - margin)), int(math.ceil(r + margin))
        lo = float(sample[i_lo]) if i_lo >= 0 else -math.inf
        hi = float(sample[i_hi]) if i_hi < m else math.inf
        return lo, hi


class _TorchOps:
    """Any torch device (CUDA): the same primitives in torch."""

    name = "torch"

    def asarray(self, t: torch.Tensor):
        return t.detach().to(torch.float64).contiguous()

    def axpy(self, s0, s1, lam: float, out=None):
        # mul then add, each correctly rounded: the same values as the numpy backend
        out = torch.mul(s1, lam, out=out) if out is not None else torch.mul(s1, lam)
        return out.add_(s0)

    def minimum(self, a, b, out=None):
        return torch.minimum(a, b, out=out) if out is not None else torch.minimum(a, b)

    def maximum(self, a, b, out=None):
        return torch.maximum(a, b, out=out) if out is not None else torch.maximum(a, b)

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

    def take(self, x, idx):
        return x[idx]

    def first_true(self, mask, r: int):
        return torch.nonzero(mask).squeeze(1)[:r]

    def zeros_bool(self, n: int, like):
        return torch.zeros(n, dtype=torch.bool, device=like.device)

    def set_true(self, mask, idx) -> None:
        mask[idx] = True

    def copy(self, x):
        return x.clone()

    def abs_max(self, x) -> float:
        """max |x_i|; NaN if x holds a NaN."""
        return max(abs(float(x.max())), abs(float(x.min()))) if x.numel() else 0.0

    def kth(self, x, k: int) -> float:
        return float(torch.kthvalue(x, k).values)

    def sample_bounds(self, x, k: int, exact_ok: bool = True) -> tuple[float, float]:
        t = self.kth(x, k)
        return t, t


def _ops_for(device: torch.device, backend: Optional[str]):
    if backend is None:
        backend = "numpy" if device.type == "cpu" else "torch"
    if backend == "numpy":
        if device.type != "cpu":
            raise ValueError("the numpy backend works on CPU tensors only")
        return _NumpyOps()
    if backend == "torch":
        return _TorchOps()
    raise ValueError(f"unknown COPS backend '{backend}' (numpy | torch)")


def _size(x) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else int(x.numel())


# ---------------------------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------------------------
def normalise(importance: torch.Tensor, name: str = "score") -> tuple[torch.Tensor, Optional[str]]:
    """Importance (higher = keep) -> minimisation-convention score s = -importance / ||importance||_1
    in float64 (appendix A.4). An all-zero vector carries no information and gives s = 0."""
    x = importance.detach().reshape(-1)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xn = x.numpy()
        norm = float(np.sum(np.abs(xn), dtype=np.float64))  # NaN/inf anywhere make the norm non-finite
        if not math.isfinite(norm):
            raise ValueError(f"COPS: the {name} importance contains NaN or inf values")
        out = np.empty(xn.shape, dtype=np.float64)
        if norm > 0.0:
            np.multiply(xn, -1.0 / norm, out=out, dtype=np.float64)
        s = torch.from_numpy(out)
    else:
        x = x.to(torch.float64)
        norm = float(x.abs().sum())
        if not math.isfinite(norm):
            raise ValueError(f"COPS: the {name} importance contains NaN or inf values")
        s = x * (-1.0 / norm) if norm > 0.0 else torch.zeros_like(x)
    if norm == 0.0:
        return s.zero_(), (
            f"the {name} importance is zero everywhere and cannot be normalised to ||s||_1 = 1; "
            f"it is treated as carrying no information (s = 0)"
        )
    return s, None


def select_smallest(v: torch.Tensor, d: int, backend: Optional[str] = None) -> torch.Tensor:
    """The mask of d-idxmin{v_i : v_i < 0} (4.9/4.10): the d smallest *negative* entries of v,
    ties broken by the lower index. Fewer than d entries if fewer than d are negative."""
    ops = _ops_for(v.device, backend)
    sel = _selection_mask(ops, ops.asarray(v.reshape(-1)), d)
    return sel if isinstance(sel, torch.Tensor) else torch.from_numpy(sel).to(v.device)


def kappa_min_of(s1: torch.Tensor, d: int, backend: Optional[str] = None) -> float:
    """kappa_min = S1(m_dagger) = min over |m|_0 <= d of S1(m), eq. (4.27)."""
    ops = _ops_for(s1.device, backend)
    x = ops.asarray(s1.reshape(-1))
    return _select_sums(ops, x, d, x, x)[0]


# ---------------------------------------------------------------------------------------------
# selection primitives on one vector
# ---------------------------------------------------------------------------------------------
def _select(ops, v, k: int):
    """d-idxmin{v_i < 0} for d = k as (strict, extra): the indices with v < T (a boolean mask) plus
    `extra`, the lowest indices of the tie block v == T needed to reach k (None if none).
    strict is None when nothing is selected."""
    if k <= 0:
        return None, None
    neg = v < 0
    if ops.count(neg) <= k:
        return neg, None
    t = ops.kth(v, k)
    strict = v < t
    fill = k - ops.count(strict)
    return strict, (ops.first_true(v == t, fill) if fill else None)


def _selection_mask(ops, v, k: int):
    strict, extra = _select(ops, v, k)
    if strict is None:
        return v < -math.inf
    if extra is not None:
        ops.set_true(strict, extra)
    return strict


def _select_sums(ops, v, k: int, w0, w1) -> tuple[float, float]:
    """(sum of w0, sum of w1) over d-idxmin{v < 0} with d = k."""
    strict, extra = _select(ops, v, k)
    if strict is None:
        return 0.0, 0.0
    a0 = ops.masked_sum(w0, strict)
    a1 = a0 if w1 is w0 else ops.masked_sum(w1, strict)
    if extra is not None:
        a0 += ops.sum(ops.take(w0, extra))
        a1 += ops.sum(ops.take(w1, extra))
    return a0, a1


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass
class CopsResult:
    mask: torch.Tensor  # the projected mask (m_plus by default), bool, flat, on the input device
    projection: str  # plus | minus
    d: int  # the sparsity constraint (entries kept at most)
    kept: int  # entries kept by `mask`
    alpha: Optional[float]  # balance factor (None when kappa was given directly)
    kappa: float
    kappa_min: float
    constraint_active: bool  # False: alpha = 0, kappa_min = 0 or g'(0) <= 0 (lam* = 0)
    lam: float  # lam*, the maximiser of the dual function (the kink of g, to rounding)
    lam_bisection: float  # the last Algorithm-4.1 midpoint (within eps of lam*)
    lam_plus: float  # the automatic upper bound of the bisection, g'(lam_plus) <= 0
    steps: int  # bisection steps k of Algorithm 4.1
    evaluations: int  # superderivatives g'(lam) actually computed (the others follow from monotonicity)
    s0: float  # S0(mask)
    s1: float  # S1(mask)
    s0_plus: float
    s1_plus: float
    s0_minus: float
    s1_minus: float
    relaxed_objective: float  # p* of the LP (4.13): S0(gamma m_minus + (1 - gamma) m_plus), S1 = kappa
    dual_value: float  # g(lam*) = p* by strong duality
    swap: Optional[tuple[Optional[int], Optional[int]]]  # (i_plus, i_minus): supp m+ \ m-, supp m- \ m+
    mask_plus: Optional[torch.Tensor] = None
    mask_minus: Optional[torch.Tensor] = None
    candidates: int = 0  # size of the candidate set the bisection ended on
    messages: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The figures logged per run (metrics.json `cops`)."""
        return {
            "s0": self.s0, "s1": self.s1, "kappa": self.kappa, "kappa_min": self.kappa_min,
            "lambda": self.lam, "steps": self.steps, "d": self.d, "kept": self.kept,
            "constraint_active": self.constraint_active, "relaxed_objective": self.relaxed_objective,
            "lambda_plus": self.lam_plus, "evaluations": self.evaluations,
        }


# ---------------------------------------------------------------------------------------------
# the candidate-set evaluator
# ---------------------------------------------------------------------------------------------
class _Active:
    """I_lam for lam in a bracket [a, b]: the indices known to be in for every lam in the bracket
    (their count and score sums) plus the candidates (indices, scores) that may be in or out."""

    def __init__(self, ops, s0, s1, d: int, kappa: float, scales: tuple[float, float]):
        self.ops, self.d, self.kappa = ops, d, kappa
        self.n_full = _size(s0)
        self.s0, self.s1 = s0, s1  # candidate scores (all at first)
        self.idx = None  # candidate indices into the full vector; None = all
        self.in_count, self.in_s0, self.in_s1 = 0, 0.0, 0.0  # the sure-in set A
        self.in_mask = None  # full boolean mask of A (created at the first reduction)
        self.interval = (0.0, math.inf)
        self.evaluations = 0
        self.scale0, self.scale1 = scales  # max |s0|, max |s1|: bound the rounding of s0 + lam s1

    def reset(self, s0, s1) -> None:
        """Back to the full problem (every index a candidate)."""
        self.s0, self.s1, self.idx = s0, s1, None
        self.in_count, self.in_s0, self.in_s1, self.in_mask = 0, 0.0, 0.0, None
        self.interval = (0.0, math.inf)

    @property
    def size(self) -> int:
        return _size(self.s0)

    @property
    def need(self) -> int:
        return self.d - self.in_count

    def _v(self, lam: float):
        return self.ops.axpy(self.s0, self.s1, lam)

    def evaluate(self, lam: float) -> tuple[float, float]:
        """(S0(m_lam), S1(m_lam)); the superderivative is g'(lam) = S1 - kappa."""
        a, b = self.interval
        if not a <= lam <= b:
            raise AssertionError(f"COPS internal error: lam={lam} outside the candidate bracket [{a}, {b}]")
        self.evaluations += 1
        v = self.s0 if lam == 0.0 else self._v(lam)
        c0, c1 = _select_sums(self.ops, v, self.need, self.s0, self.s1)
        return self.in_s0 + c0, self.in_s1 + c1

    def selection(self, lam: float):
        """Boolean selection over the candidates at lam."""
        return _selection_mask(self.ops, self.s0 if lam == 0.0 else self._v(lam), self.need)

    def reduce(self, a: float, b: float) -> None:
        """Restrict to the bracket [a, b]: drop indices that are in I_lam (or out of it) for every
        lam in [a, b]."""
        ops = self.ops
        need = self.need
        va, vb = self._v(a), self._v(b)
        lo = ops.minimum(va, vb)
        hi = ops.maximum(va, vb, out=vb)
        del va
        # float rounding of s0 + lam s1 at any lam in [a, b] stays within delta of the exact line
        delta = 8 * _U * (self.scale0 + max(abs(a), abs(b)) * self.scale1) + 1e-300
        tl = self._lower_kth(lo, need) - 2 * delta  # <= min(kth(lo), 0) - 2 delta
        th = self._upper_kth(hi, need) + 2 * delta  # >= min(kth(hi), 0) + 2 delta
        sure_in = hi < tl
        keep = ~sure_in & (lo <= th)
        n_in = ops.count(sure_in)
        if n_in:
            self.in_count += n_in
            self.in_s0 += ops.masked_sum(self.s0, sure_in)
            self.in_s1 += ops.masked_sum(self.s1, sure_in)
            if self.idx is None:
                self.in_mask = sure_in if self.in_mask is None else (self.in_mask | sure_in)
            else:
                if self.in_mask is None:
                    self.in_mask = ops.zeros_bool(self.n_full, self.s0)
                ops.set_true(self.in_mask, ops.compress(sure_in, self.idx))
        if self.idx is None:
            self.idx = ops.nonzero(keep)
            self.s0, self.s1 = ops.take(self.s0, self.idx), ops.take(self.s1, self.idx)
        else:
            self.idx = ops.compress(keep, self.idx)
            self.s0, self.s1 = ops.compress(keep, self.s0), ops.compress(keep, self.s1)
        self.interval = (a, b)

    def _lower_kth(self, x, k: int) -> float:
        """A value <= min(k-th smallest of x, 0) (verified; cheap on big CPU vectors)."""
        ops = self.ops
        if k <= 0:
            return -math.inf
        if k > _size(x):
            return 0.0
        lo, _ = ops.sample_bounds(x, k)
        for _ in range(3):
            lo = min(lo, 0.0)
            if lo == -math.inf or ops.count(x < lo) < k:  # fewer than k strictly below: kth >= lo
                return lo
            lo = lo - abs(lo) - 1e-300  # the sample was unlucky: go lower
        return min(ops.kth(x, k), 0.0)

    def _upper_kth(self, x, k: int) -> float:
        """A value >= min(k-th smallest of x, 0) (verified)."""
        ops = self.ops
        if k <= 0:
            return -math.inf
        if k > _size(x):
            return 0.0
        _, hi = ops.sample_bounds(x, k)
        if hi >= 0:
            return 0.0
        if ops.count(x <= hi) >= k:  # at least k at or below: kth <= hi
            return hi
        return min(ops.kth(x, k), 0.0)


# ---------------------------------------------------------------------------------------------
# the solver
# ---------------------------------------------------------------------------------------------
def solve(s0: torch.Tensor, s1: torch.Tensor, d: int, *, alpha: Optional[float] = None,
          kappa: Optional[float] = None, eps: float = EPS_N, projection: str = "plus",
          refine: bool = True, backend: Optional[str] = None, with_masks: bool = False) -> CopsResult:
    """Algorithm 4.1 on scores already in the minimisation convention (lower = keep).

    Give either `alpha` (kappa = alpha * kappa_min, eq. 4.28) or `kappa` directly. Works on the
    device of `s0` (numpy on the CPU, torch elsewhere; `backend` forces one). `refine=False` stops
    after the eps-bisection and projects on the masks at the ends of the final bracket."""
    if (alpha is None) == (kappa is None):
        raise ValueError("COPS: give exactly one of alpha (the balance factor) and kappa (the constraint)")
    if alpha is not None and not (0.0 <= alpha < 1.0):
        raise ValueError(f"COPS: the balance factor alpha must lie in [0, 1); got {alpha}")
    if projection not in ("plus", "minus"):
        raise ValueError(f"COPS: projection must be 'plus' (feasible m+) or 'minus' (m-); got '{projection}'")
    if not eps > 0:
        raise ValueError(f"COPS: the numerical precision eps must be > 0; got {eps}")
    s0, s1 = s0.reshape(-1), s1.reshape(-1)
    if s0.numel() != s1.numel():
        raise ValueError(f"COPS: target and control scores differ in length ({s0.numel()} vs {s1.numel()})")
    device = s0.device
    ops = _ops_for(device, backend)
    x0, x1 = ops.asarray(s0), ops.asarray(s1.to(device))
    scales = (ops.abs_max(x0), ops.abs_max(x1))
    if not all(math.isfinite(v) for v in scales):
        raise ValueError("COPS: the scores contain NaN or inf values")
    n = _size(x0)
    if int(d) < 0:
        raise ValueError(f"COPS: the sparsity constraint d must be >= 0; got {d}")
    d = min(int(d), n)
    messages: list[str] = []
    out = dict(alpha=alpha, projection=projection, d=d, messages=messages, with_masks=with_masks, device=device)

    # line 1: kappa_min (4.27) from the control score alone, kappa = alpha * kappa_min (4.28)
    kmin = _select_sums(ops, x1, d, x1, x1)[0]
    if alpha is not None:
        kap = alpha * kmin
        active = alpha > 0.0 and kmin < 0.0
        if alpha > 0.0 and kmin == 0.0 and d > 0:
            messages.append(
                "kappa_min = 0: no entry has a positive control importance, so kappa = alpha * kappa_min = 0 "
                "is the alpha = 0 case (no constraint); the mask is the target-only mask"
            )
    else:
        kap = float(kappa)
        tol = 1e-12 * abs(kmin)
        if kap < kmin - tol:
            raise ValueError(f"COPS: kappa = {kap} < kappa_min = {kmin}: no mask with at most d entries satisfies S1(m) <= kappa")
        active = True
        if kap <= kmin + tol and d > 0:
            messages.append("kappa = kappa_min: Slater's condition fails (lam* = infinity); the mask is the limit of "
                            "lam -> infinity (the control-only mask, ties broken by the target score)")
            return _limit_result(ops, x0, x1, d, kap, kmin, out)
    out.update(kappa=kap, kappa_min=kmin)

    # lines 2-3: I_0 gives g'(0); g'(0) <= 0 (or no constraint) means lam* = 0. On large problems
    # g'(0) > 0 usually follows from g'(a) > 0 at the lower end of the first bracket (monotonicity).
    act = _Active(ops, x0, x1, d, kap, scales)
    known: dict[float, tuple[float, float]] = {}
    if d == 0 or not active:
        return _zero_result(act, known, False, out)
    # g'(inf) = kappa_min - kappa < 0: lam* < inf. Bracket it and shrink the candidates to the bracket.
    a, b = _bracket(ops, act, x0, x1, d, kap, alpha, known, messages)
    if a == 0.0 and known[0.0][1] - kap <= 0.0:
        return _zero_result(act, known, False, out)
    if b is None:
        return _limit_result(ops, x0, x1, d, kap, kmin, out, evals=act.evaluations)

    def slope(lam: float) -> float:
        return known[lam][1] - kap

    exact: Optional[float] = next((lam for lam in (a, b) if slope(lam) == 0.0), None)
    pos, neg = a, b  # g'(pos) > 0 > g'(neg), both evaluated; every lam in between is a candidate

    def sign_at(lam: float) -> float:
        """sign of g'(lam): deduced from monotonicity outside (pos, neg), else evaluated."""
        nonlocal pos, neg
        if lam <= pos:
            return 1.0
        if lam >= neg:
            return -1.0
        known[lam] = act.evaluate(lam)
        s = slope(lam)
        if s > 0:
            pos = lam
        elif s < 0:
            neg = lam
        return s

    # Narrow [pos, neg] before the bisection needs it: two regula-falsi probes on the monotone g'
    # and one more reduction. They only add known signs (the bisection's steps and result are those
    # of Algorithm 4.1 from [0, lam_plus]); they save evaluations on a large candidate set.
    for _ in range(2):
        if exact is not None or act.size <= _SMALL or neg - pos <= 0.02 * neg:
            break
        gp, gn = slope(pos), slope(neg)
        width = neg - pos
        x = min(max(pos + width * gp / (gp - gn), pos + 0.01 * width), neg - 0.01 * width)
        s = sign_at(x)
        if s == 0.0:
            exact = x
            break
        y = x * (0.97 if s < 0 else 1.03)  # just across lam*, if the interpolation was good
        if pos < y < neg and sign_at(y) == 0.0:
            exact = y
            break
        act.reduce(pos, neg)

    # the automatic upper bound: the smallest power of two with g'(lam_plus) <= 0
    j = min(_LAM_MAX_EXP, max(_LAM_MIN_EXP, math.ceil(math.log2(b))))
    while exact is None and j > _LAM_MIN_EXP:
        s = sign_at(2.0 ** (j - 1))
        if s > 0:
            break
        j -= 1
        if s == 0.0:
            exact = 2.0 ** j
    lam_plus = 2.0 ** j

    # lines 7-19: bisection on [0, lam_plus] until lam_plus^(k) - lam_0^(k) <= eps
    lo_l, hi_l, steps, lam_b = 0.0, lam_plus, 0, 0.0
    while exact is None and (steps == 0 or 0.5 * (hi_l - lo_l) > eps):  # repeat ... until
        mid = 0.5 * (lo_l + hi_l)
        if not lo_l < mid < hi_l:
            break  # floating-point resolution of lam reached
        lam_b = mid
        s = sign_at(mid)
        steps += 1
        if s == 0.0:
            exact = mid
        elif s > 0:
            lo_l = mid
        else:
            hi_l = mid
        ra, rb = act.interval
        if act.size > 4096 and (neg - pos) <= 0.25 * (rb - ra):
            act.reduce(pos, neg)

    if exact is not None:  # g'(lam) = 0: S1(m_lam) = kappa, lam is optimal and m+ = m-
        st = known[exact]
        m = _full(act, act.selection(exact), device)
        return _result(m, m, st, st, lam=exact, lam_b=lam_b or exact, lam_plus=lam_plus, steps=steps,
                       evals=act.evaluations, active=True, p_star=st[0], g_star=st[0], swap=None, cand=act.size, **out)

    # the final bracket [L, R], g'(L) > 0 > g'(R): resolve it to the kink lam* (cutting planes)
    L, R = pos, neg
    sL, sR = known[L], known[R]
    lam_star = lam_b
    if refine:
        for _ in range(500):
            den = sL[1] - sR[1]
            x = (sR[0] - sL[0]) / den  # where the supporting lines of g at L and R meet
            if not L < x < R:
                lam_star = min(max(x, L), R)
                break
            lam_star = x
            st = act.evaluate(x)
            gx = st[0] + x * (st[1] - kap)
            upper = sL[0] + x * (sL[1] - kap)
            tol = 64 * _U * (abs(sL[0]) + abs(sR[0]) + x * (abs(sL[1]) + abs(sR[1]) + abs(kap)))
            if gx >= upper - tol:
                break  # g touches both lines at x: x is the kink lam*
            sx = st[1] - kap
            if sx == 0.0:
                m = _full(act, act.selection(x), device)
                return _result(m, m, st, st, lam=x, lam_b=lam_b, lam_plus=lam_plus, steps=steps, evals=act.evaluations,
                               active=True, p_star=st[0], g_star=st[0], swap=None, cand=act.size, **out)
            if sx > 0:
                L, sL = x, st
            else:
                R, sR = x, st
    # m- (left piece, S1 > kappa) and m+ (right piece, S1 < kappa), Theorem 4.3.1
    selL, selR = act.selection(L), act.selection(R)
    swap = None
    if refine:
        selL, selR, sL, sR, swap = _one_swap(ops, act, selL, selR, sL, sR, kap)
    gamma = (kap - sR[1]) / (sL[1] - sR[1])
    p_star = sR[0] + gamma * (sL[0] - sR[0])
    g_star = sR[0] + lam_star * (sR[1] - kap)
    return _result(_full(act, selR, device), _full(act, selL, device), sR, sL, lam=lam_star, lam_b=lam_b,
                   lam_plus=lam_plus, steps=steps, evals=act.evaluations, active=True, p_star=p_star, g_star=g_star,
                   swap=swap, cand=act.size, **out)


def _result(mask_p, mask_m, sp, sm, *, lam, lam_b, lam_plus, steps, evals, active, p_star, g_star, swap, cand,
            alpha, projection, d, messages, with_masks, device, kappa, kappa_min) -> CopsResult:
    mask, st = (mask_p, sp) if projection == "plus" else (mask_m, sm)
    kept = int(torch.count_nonzero(mask))
    if kept < d:
        messages.append(
            f"only {kept} of the d = {d} entries have a negative combined score s0 + lam s1 at lam = {lam:.6g}; "
            f"problems (4.7)/(4.11) never keep an entry that does not lower the score, so the mask keeps {kept}"
        )
    return CopsResult(
        mask=mask, projection=projection, d=d, kept=kept, alpha=alpha, kappa=kappa, kappa_min=kappa_min,
        constraint_active=active, lam=lam, lam_bisection=lam_b, lam_plus=lam_plus, steps=steps, evaluations=evals,
        s0=st[0], s1=st[1], s0_plus=sp[0], s1_plus=sp[1], s0_minus=sm[0], s1_minus=sm[1],
        relaxed_objective=p_star, dual_value=g_star, swap=swap,
        mask_plus=mask_p if with_masks else None, mask_minus=mask_m if with_masks else None,
        candidates=cand, messages=messages,
    )


def _zero_result(act: _Active, known, active: bool, out) -> CopsResult:
    """lam* = 0: the target-only mask m(0) = d-idxmin{s0 < 0}."""
    st = known[0.0] if 0.0 in known else act.evaluate(0.0)
    m = _full(act, act.selection(0.0), out["device"])
    return _result(m, m, st, st, lam=0.0, lam_b=0.0, lam_plus=0.0, steps=0, evals=act.evaluations,
                   active=active, p_star=st[0], g_star=st[0], swap=None, cand=act.size, **out)


def _limit_result(ops, x0, x1, d, kap, kmin, out, evals: int = 0) -> CopsResult:
    sel = _limit_mask(ops, x0, x1, d)
    st = (ops.masked_sum(x0, sel), ops.masked_sum(x1, sel))
    m = sel if isinstance(sel, torch.Tensor) else torch.from_numpy(sel).to(out["device"])
    out = {**out, "kappa": kap, "kappa_min": kmin}
    return _result(m, m, st, st, lam=math.inf, lam_b=math.inf, lam_plus=math.inf, steps=0, evals=evals,
                   active=True, p_star=st[0], g_star=st[0], swap=None, cand=0, **out)


def _full(act: _Active, sel, device) -> torch.Tensor:
    """The full mask: the sure-in set plus the selected candidates."""
    ops = act.ops
    if act.idx is None:
        mask = sel if act.in_mask is None else (sel | act.in_mask)
    else:
        mask = ops.copy(act.in_mask) if act.in_mask is not None else ops.zeros_bool(act.n_full, sel)
        ops.set_true(mask, ops.compress(sel, act.idx))
    return mask if isinstance(mask, torch.Tensor) else torch.from_numpy(mask).to(device)


def _limit_mask(ops, x0, x1, d: int):
    """I_lam for lam -> infinity: the d first entries in lexicographic (s1, s0, index) order among
    those with s1 < 0, or s1 = 0 and s0 < 0."""
    if d <= 0:
        return x1 < -math.inf
    neg = x1 < 0
    n_neg = ops.count(neg)
    if n_neg >= d:
        t = ops.kth(x1, d)
        sel = x1 < t
        room = d - ops.count(sel)
        block = ops.nonzero(x1 == t)  # the tie block at the threshold: broken by the target score
    else:
        sel, room = neg, d - n_neg
        block = ops.nonzero(x1 == 0)  # entries that only the target score can make negative
    if room > 0 and _size(block):
        sub = ops.take(x0, block)
        if n_neg >= d:
            pick = _smallest_any(ops, sub, room)
        else:
            pick = _selection_mask(ops, sub, room)
        ops.set_true(sel, ops.compress(pick, block))
    return sel


def _smallest_any(ops, v, k: int):
    """The k smallest entries of v (no sign condition), ties by the lower index."""
    if k >= _size(v):
        return v == v
    t = ops.kth(v, k)
    sel = v < t
    fill = k - ops.count(sel)
    if fill:
        ops.set_true(sel, ops.first_true(v == t, fill))
    return sel


def _one_swap(ops, act: _Active, selL, selR, sL, sR, kap):
    """Theorem 4.3.1 (proof B.1.5): if the masks of the two pieces at lam* differ in more than one
    entry (a block of ties at lam*: equal values s0 + lam* s1, or values crossing zero together),
    walk from m- to m+ one entry at a time and keep the pair around kappa, so m+ and m- differ in
    one entry each. Every mask on the way has the same Lagrangian value at lam*. Vectorised: the
    walk is a cumulative sum, so a block of millions of ties costs a sort, not a loop."""
    diff_m = ops.nonzero(selL & ~selR)  # in m-, not in m+
    diff_p = ops.nonzero(selR & ~selL)  # in m+, not in m-
    nm, np_ = _size(diff_m), _size(diff_p)

    def full_index(i):
        return None if i is None else (int(act.idx[i]) if act.idx is not None else int(i))

    if nm <= 1 and np_ <= 1:
        if not (nm or np_):
            return selL, selR, sL, sR, None
        return selL, selR, sL, sR, (full_index(int(diff_p[0]) if np_ else None), full_index(int(diff_m[0]) if nm else None))
    to_np = (lambda x: x) if isinstance(diff_m, np.ndarray) else (lambda x: x.cpu().numpy())
    s0c, s1c = to_np(act.s0), to_np(act.s1)
    dm, dp = to_np(diff_m), to_np(diff_p)
    out_m = dm[np.argsort(-s1c[dm], kind="stable")]  # leave first: the largest control score
    in_p = dp[np.argsort(s1c[dp], kind="stable")]  # enter first: the smallest control score
    steps = max(nm, np_)
    d0, d1 = np.zeros(steps), np.zeros(steps)
    d0[:np_] += s0c[in_p]
    d1[:np_] += s1c[in_p]
    d0[:nm] -= s0c[out_m]
    d1[:nm] -= s1c[out_m]
    c0, c1 = sL[0] + np.cumsum(d0), sL[1] + np.cumsum(d1)
    hits = np.flatnonzero(c1 <= kap)
    if not hits.size:
        return selL, selR, sL, sR, None
    k = int(hits[0])  # after swap k (0-based) the control constraint holds for the first time

    def walked(j):  # the mask after the first j swaps
        m = ops.copy(selL)
        if min(j, nm):
            gone = out_m[: min(j, nm)]
            m[gone if isinstance(m, np.ndarray) else torch.as_tensor(gone, device=m.device)] = False
        if min(j, np_):
            new = in_p[: min(j, np_)]
            m[new if isinstance(m, np.ndarray) else torch.as_tensor(new, device=m.device)] = True
        return m

    prev = (sL[0], sL[1]) if k == 0 else (float(c0[k - 1]), float(c1[k - 1]))
    swap = (full_index(int(in_p[k]) if k < np_ else None), full_index(int(out_m[k]) if k < nm else None))
    return walked(k), walked(k + 1), prev, (float(c0[k]), float(c1[k])), swap


def _bracket(ops, act: _Active, x0, x1, d: int, kap: float, alpha, known, messages) -> tuple[float, Optional[float]]:
    """Find a < b with g'(a) > 0 >= g'(b) (values stored in `known`) and restrict the candidates to
    [a, b]. Returns a = 0 with g'(0) <= 0 when lam* = 0, and b = None when lam* > 2^80.

    Large problems start from an estimate of lam* on a fixed random subsample and widen the
    bracket until it is verified (each attempt restricts the full vectors once); small ones (and
    large ones without an estimate) double/halve from lam = 1 with full evaluations."""

    def g1(lam: float) -> float:
        if lam not in known:
            known[lam] = act.evaluate(lam)
        return known[lam][1] - kap

    n = act.n_full
    guess = _estimate(ops, x0, x1, d, kap, alpha) if n > 4 * _SMALL else None
    if guess is None:
        if g1(0.0) <= 0:
            return 0.0, 0.0
        lam = 1.0
        if g1(lam) > 0:  # double up
            while g1(lam) > 0:
                if lam >= 2.0 ** _LAM_MAX_EXP:
                    messages.append(f"lam* exceeds 2^{_LAM_MAX_EXP}; the mask is the limit of lam -> infinity")
                    return lam, None
                lam *= 2.0
            a, b = lam / 2.0, lam
        else:  # halve down
            b = lam
            while b > 2.0 ** _LAM_MIN_EXP and g1(b / 2.0) <= 0:
                b /= 2.0
            a = b / 2.0 if b > 2.0 ** _LAM_MIN_EXP else 0.0
        if n > 4096:
            act.reduce(a, b)
        return a, b
    # the subsample estimate is within ~20% for alpha >= 0.5 but tends to be high for small alpha
    # (up to 1.8x at alpha = 0.05 and q = 0.99): a wider lower side there
    ratio = 1.3
    low = 2.0 if alpha is None or alpha <= 0.1 else (1.5 if alpha <= 0.5 else ratio)
    a, b = guess / low, guess * ratio
    full = (act.s0, act.s1)
    lo_known, hi_known = 0.0, math.inf  # g'(lo_known) > 0 (or lo_known = 0, unknown), g'(hi_known) <= 0
    for _ in range(200):
        act.reset(*full)
        act.reduce(a, b)
        ga, gb = g1(a), g1(b)
        if ga > 0 >= gb or (a == 0.0 and ga <= 0):
            return a, b
        ratio = ratio * ratio
        if ga <= 0:  # lam* <= a
            hi_known = a
            a, b = (lo_known if a / ratio <= lo_known else a / ratio), a
        else:  # lam* > b
            lo_known = b
            if b >= 2.0 ** _LAM_MAX_EXP:
                messages.append(f"lam* exceeds 2^{_LAM_MAX_EXP}; the mask is the limit of lam -> infinity")
                return b, None
            a, b = b, min(hi_known, b * ratio)
    raise RuntimeError("COPS: could not bracket lam* (internal error)")


def _estimate(ops, x0, x1, d: int, kap: float, alpha) -> Optional[float]:
    """lam* of the same problem on a fixed random subsample: only a guess for the first bracket."""
    n = _size(x0)
    m = 2 * _SAMPLE
    if isinstance(x0, np.ndarray):
        idx = np.sort(np.random.default_rng(777).integers(0, n, m))
    else:
        g = torch.Generator(device="cpu").manual_seed(777)
        idx = torch.sort(torch.randint(0, n, (m,), generator=g)).values.to(x0.device)
    y0, y1 = ops.take(x0, idx), ops.take(x1, idx)
    f = _size(y0) / n
    dm = max(1, int(round(d * f)))
    k_sub = alpha * _select_sums(ops, y1, dm, y1, y1)[0] if alpha is not None else kap * f

    def slope(lam: float) -> float:
        return _select_sums(ops, ops.axpy(y0, y1, lam), dm, y1, y1)[0] - k_sub

    if slope(0.0) <= 0:
        return None
    lo, hi = 0.0, 1.0
    while slope(hi) > 0:
        lo, hi = hi, 2.0 * hi
        if hi > 2.0 ** _LAM_MAX_EXP:
            return None
    if lo == 0.0:
        while hi > 2.0 ** _LAM_MIN_EXP and slope(hi / 2.0) <= 0:
            hi /= 2.0
        lo = hi / 2.0
    for _ in range(10):
        mid = math.sqrt(lo * hi)
        if slope(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def linear_combination(s0: torch.Tensor, s1: torch.Tensor, d: int, lam: float, backend: Optional[str] = None) -> torch.Tensor:
    """The baseline of section 4.4.4, eq. (4.34): the d best of S0 + lam S1 (d-idxmin of s0 + lam s1 < 0)."""
    if not lam >= 0:
        raise ValueError(f"COPS: lam must be >= 0; got {lam}")
    return select_smallest(s0.reshape(-1).to(torch.float64) + lam * s1.reshape(-1).to(torch.float64), d, backend)


def cops_mask(target_importance: torch.Tensor, control_importance: torch.Tensor, d: int, alpha: float,
              eps: float = EPS_N, projection: str = "plus", backend: Optional[str] = None,
              with_masks: bool = False) -> CopsResult:
    """COPS from two importance vectors (higher = more important, as the scores API returns them):
    normalise both to ||s||_1 = 1 in the minimisation convention and run Algorithm 4.1."""
    s0, msg0 = normalise(target_importance, "target")
    s1, msg1 = normalise(control_importance, "control")
    res = solve(s0, s1, d, alpha=alpha, eps=eps, projection=projection, backend=backend, with_masks=with_masks)
    res.messages[:0] = [m for m in (msg0, msg1) if m]
    return res
