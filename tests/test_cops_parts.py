"""The building blocks of COPS: the dual's normalisation and candidate reduction (cops/dual.py), the one-swap
projection and the limit masks (cops/projection.py), the backends' primitives (cops/backends.py), the k-th value
bounds (cops/selection.py).

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs."""
from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
import torch

from sparse_exp.sparsity import cops as C
from sparse_exp.sparsity.cops import backends
from sparse_exp.sparsity.cops.backends import NumpyOps, ops_for
from sparse_exp.sparsity.cops.dual import CandidateSet
from sparse_exp.sparsity.cops.projection import one_swap
from sparse_exp.sparsity.cops.selection import lower_kth, upper_kth
from test_cops import Guess

BACKENDS = ["numpy", "torch"]


def cpu_ops(backend):
    return ops_for(torch.device("cpu"), backend)


def as_list(x) -> list:
    return np.asarray(x).tolist()


def reference_selection(s0, s1, lam, d) -> list[int]:
    """d-idxmin{s0 + lam s1 < 0} by a plain sort (ties by the lower index), in exact arithmetic."""
    v = [Fraction(a) + Fraction(lam) * Fraction(b) for a, b in zip(s0, s1)]
    return sorted(i for i in sorted(range(len(v)), key=lambda i: (v[i], i))[:d] if v[i] < 0)


# normalise (A.4) --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_normalise_of_every_dtype_is_float64_and_exact(dtype):
    """s = -x / ||x||_1 in float64 for integer and half-precision importances too (they take the torch branch),
    also for a norm below 1; the all-zero vector gives s = 0 and a message naming the (default) score."""
    x = torch.tensor([1, -3, 0, 4], dtype=dtype)
    s, msg = C.normalise(x)
    assert msg is None and s.dtype == torch.float64 and s.tolist() == [-0.125, 0.375, 0.0, -0.5]
    if dtype.is_floating_point:  # ||x||_1 = 3/4 < 1; -x * (-1 / (3/4)) rounds like the exact -x / (3/4)
        s, _ = C.normalise(torch.tensor([0.25, -0.5], dtype=dtype))
        assert s.dtype == torch.float64 and s.tolist() == [float(Fraction(-1, 3)), float(Fraction(2, 3))]
    s, msg = C.normalise(torch.zeros(3, dtype=dtype))
    assert s.dtype == torch.float64 and s.tolist() == [0.0, 0.0, 0.0]
    assert msg.startswith("the score importance is zero everywhere")


def test_normalise_sums_float32_importances_in_float64():
    """2^24 + 1 is not a float32: a float32 sum would give ||x||_1 = 2^24 and s[1] = -2^-24."""
    s, _ = C.normalise(torch.tensor([2.0**24, 1.0], dtype=torch.float32))
    assert s.tolist() == [float(Fraction(-(2**24), 2**24 + 1)), float(Fraction(-1, 2**24 + 1))]


# the candidate set (dual.py) -------------------------------------------------------------------------------
# Entries (s0, s1) for lam in [1/2, 1], d = 4. v = s0 + lam s1 ranges over [lo, hi]:
#   0: (-8, 2)   [-7, -6]      always among the 4 smallest negatives: sure in
#   1: (-7, -2)  [-9, -8]      sure in
#   2-4: (-4, 0) -4            a tie block at the 4th smallest value: candidates (2 of them are needed)
#   5: (-2, -4)  [-6, -4]      at -4 (tied with the block) at lam = 1/2, -6 at lam = 1: a candidate
#   6: (1, -2)   [-1, 0]       above the 4th smallest for every lam: out
#   7: (3, 2)    [4, 5]        out (positive)
#   8: (-3, 4)   [-1, 1]       out
#   9: (9, -12)  [-3, 3]       out (above the 4th smallest); |s1| = 12 > |s0| = 9, for the rounding margin
# Narrowed to [3/4, 1], entry 5 lies in [-6, -5], below the block: sure in as well.
RS0 = [-8.0, -7.0, -4.0, -4.0, -4.0, -2.0, 1.0, 3.0, -3.0, 9.0]
RS1 = [2.0, -2.0, 0.0, 0.0, 0.0, -4.0, -2.0, 2.0, 4.0, -12.0]


def candidate_set(backend, s0, s1, d):
    ops = cpu_ops(backend)
    x0, x1 = ops.asarray(torch.tensor(s0, dtype=torch.float64)), ops.asarray(torch.tensor(s1, dtype=torch.float64))
    return CandidateSet(ops, x0, x1, d, (ops.abs_max(x0), ops.abs_max(x1)))


def check_against_the_sort(cands, s0, s1, d, a, b):
    """On a grid of the bracket: the sure-in entries are in I_lam, the dropped ones never, and evaluate /
    selection / full_mask give the sorted selection and its sums (exact: small dyadic numbers)."""
    kept = set(as_list(cands.idx))
    sure_in = set(np.flatnonzero(np.asarray(cands.in_mask)).tolist()) if cands.in_mask is not None else set()
    assert len(sure_in) == cands.in_count and not kept & sure_in
    for j in range(5):
        lam = a + (b - a) * j / 4
        ref = reference_selection(s0, s1, lam, d)
        assert sure_in <= set(ref) <= sure_in | kept, (lam, ref)
        assert cands.evaluate(lam) == (sum(s0[i] for i in ref), sum(s1[i] for i in ref)), lam
        assert np.flatnonzero(np.asarray(cands.full_mask(cands.selection(lam)))).tolist() == ref, lam


@pytest.mark.parametrize("backend,scale", [("numpy", 1.0), ("torch", 1.0), ("numpy", 2.0**-40)])
def test_reduce_drops_exactly_the_decided_entries(backend, scale):
    """reduce keeps the entries whose range [lo, hi] over the bracket may straddle the threshold (a tie block
    at it included), counts the sure-in ones apart (their sums add up over two reductions) and drops the rest.
    The rounding margin scales with the scores: a power-of-two scale (exact) changes nothing."""
    s0, s1 = [scale * v for v in RS0], [scale * v for v in RS1]
    cands = candidate_set(backend, s0, s1, 4)
    cands.reduce(0.5, 1.0)
    assert as_list(cands.idx) == [2, 3, 4, 5] and cands.in_count == 2 and cands.need == 2
    check_against_the_sort(cands, s0, s1, 4, 0.5, 1.0)
    cands.reduce(0.75, 1.0)
    assert as_list(cands.idx) == [2, 3, 4] and cands.in_count == 3 and cands.need == 1
    assert (cands.in_s0, cands.in_s1) == (scale * -17.0, scale * -4.0)  # entries 0, 1, 5
    check_against_the_sort(cands, s0, s1, 4, 0.75, 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduce_of_zero_scores_keeps_the_zeros_out_of_the_mask(backend):
    """All-zero scores (rounding margin 0 but for its 1e-300 floor): a zero is never in I_lam (v < 0 is
    strict), so nothing is sure in; the masks stay empty (full_mask builds its zeros on the backend)."""
    cands = candidate_set(backend, [0.0] * 5, [0.0] * 5, 2)
    cands.reduce(0.0, 1.0)
    assert cands.in_count == 0 and cands.size == 5
    assert cands.evaluate(0.5) == (0.0, 0.0)
    assert not np.asarray(cands.full_mask(cands.selection(0.5))).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_candidate_set_counts_evaluations_and_skips_the_product_at_zero(backend):
    """`evaluations` (the result's figure) counts every evaluate; at lam = 0 the values are s0 itself, so
    neither evaluate nor selection computes s0 + 0 * s1 (one vector operation less)."""
    cands = candidate_set(backend, RS0, RS1, 4)
    products = []
    real = cands.ops.axpy
    cands.ops.axpy = lambda *args: products.append(args[2]) or real(*args)
    assert cands.evaluate(0.0) == (-23.0, 0.0)  # entries 0, 1, 2, 3 (v = s0; the tie block by index)
    assert as_list(cands.selection(0.0)) == [True, True, True, True] + [False] * 6
    assert products == []
    assert cands.evaluate(1.0) == (-21.0, -4.0) and cands.evaluate(1.0) == (-21.0, -4.0)  # 0, 1, 5, 2
    assert products == [1.0, 1.0] and cands.evaluations == 3


# one_swap (Theorem 4.3.1) -----------------------------------------------------------------------------------
# A tie block at lam* = 1 (v = s0 + s1 = -5 for all five entries): m- holds entries 0, 1, 2 and m+ entries 3, 4.
# The walk from m- to m+ swaps out the largest control score first (1: 4, then 2: 2, then 0: 1) and swaps in the
# smallest first (4: -1, then 3: 0.5); S1 along the walk: 7 -> 2 -> 0.5 -> -0.5.
WS1 = [1.0, 4.0, 2.0, 0.5, -1.0]
WS0 = [-5.0 - v for v in WS1]


def walk_set(backend, reduced):
    """The block as a whole candidate set, or (reduced) inside a longer vector: entry 0 sure in (-100), the
    block at full indices 1-5, entry 6 out (+100) - then the swap must come back in full indices."""
    if not reduced:
        return candidate_set(backend, WS0, WS1, 3), 0, (0.0, 0.0)
    cands = candidate_set(backend, [-100.0] + WS0 + [100.0], [0.0] + WS1 + [0.0], 4)
    cands.reduce(0.75, 1.25)
    assert as_list(cands.idx) == [1, 2, 3, 4, 5] and cands.in_count == 1
    return cands, 1, (-100.0, 0.0)


def masks(ops, n, *members):
    out = []
    for m in members:
        x = np.zeros(n, dtype=bool)
        x[list(m)] = True
        out.append(x if isinstance(ops, NumpyOps) else torch.from_numpy(x))
    return out


def sums(members, base=(0.0, 0.0)):
    return (base[0] + sum(WS0[i] for i in members), base[1] + sum(WS1[i] for i in members))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduced", [False, True])
@pytest.mark.parametrize("kappa,minus,plus,swap", [
    (3.0, {0, 1, 2}, {0, 2, 4}, (4, 1)),  # the first swap reaches kappa
    (1.0, {0, 2, 4}, {0, 3, 4}, (3, 2)),
    (0.5, {0, 2, 4}, {0, 3, 4}, (3, 2)),  # S1 = kappa exactly is feasible (<=): the walk stops there
    (-0.5, {0, 3, 4}, {3, 4}, (None, 0)),  # m- has the larger block: its last entry swaps with the empty slot
])
def test_one_swap_walks_from_m_minus_to_m_plus(backend, reduced, kappa, minus, plus, swap):
    cands, off, base = walk_set(backend, reduced)
    ops = cands.ops
    selL, selR = masks(ops, 5, {0, 1, 2}, {3, 4})
    mm, mp, sm, sp, sw = one_swap(cands, selL, selR, sums({0, 1, 2}, base), sums({3, 4}, base), kappa)
    assert set(np.flatnonzero(np.asarray(mm)).tolist()) == minus and set(np.flatnonzero(np.asarray(mp)).tolist()) == plus
    assert sm == sums(minus, base) and sp == sums(plus, base)
    assert sw == tuple(None if i is None else i + off for i in swap)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_minus,n_plus", [(2, 1), (1, 2), (2, 0), (0, 2)])
def test_one_swap_leaves_masks_one_swap_apart(backend, n_minus, n_plus):
    """Masks two entries apart on one side are walked too: m+ and m- end one swap apart around kappa."""
    cands, _, _ = walk_set(backend, False)
    minus0, plus0 = {1, 2, 0}, {4, 3}
    minus0 = set(sorted(minus0, key=lambda i: -WS1[i])[:n_minus])  # {1}, {1, 2}
    plus0 = set(sorted(plus0, key=lambda i: WS1[i])[:n_plus])  # {4}, {4, 3}
    sL, sR = sums(minus0), sums(plus0)
    kappa = (sL[1] + sR[1]) / 2
    selL, selR = masks(cands.ops, 5, minus0, plus0)
    mm, mp, sm, sp, sw = one_swap(cands, selL, selR, sL, sR, kappa)
    mm, mp = set(np.flatnonzero(np.asarray(mm)).tolist()), set(np.flatnonzero(np.asarray(mp)).tolist())
    assert len(mp - mm) <= 1 and len(mm - mp) <= 1 and sp[1] <= kappa < sm[1]
    assert sw == (next(iter(mp - mm), None), next(iter(mm - mp), None))
    assert sm == sums(mm) and sp == sums(mp)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_swap_keeps_masks_already_one_swap_apart(backend):
    """m+ and m- differ in at most one entry each: returned as given, with the sums given (not re-added:
    1 + (1e-17 - 1) would round to 0) and the swap in full indices (None where they are equal)."""
    ops = cpu_ops(backend)
    s0, s1 = [1.0, 1e-17, -1.0], [1.0, 0.5, 0.0]
    cands = CandidateSet(ops, ops.asarray(torch.tensor(s0)), ops.asarray(torch.tensor(s1)), 2, (1.0, 1.0))
    for minus, plus, swap in [({0}, {1}, (1, 0)), ({2}, {1, 2}, (1, None)), ({0, 2}, {2}, (None, 0)),
                              ({0, 2}, {0, 2}, None)]:
        selL, selR = masks(ops, 3, minus, plus)
        sL = (sum(s0[i] for i in minus), sum(s1[i] for i in minus))
        sR = (sum(s0[i] for i in plus), sum(s1[i] for i in plus))
        mm, mp, sm, sp, sw = one_swap(cands, selL, selR, sL, sR, 0.75)
        assert mm is selL and mp is selR and (sm, sp, sw) == (sL, sR, swap), (minus, plus)
        if plus == {1}:
            assert sp == (1e-17, 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_swap_breaks_ties_by_the_lower_index(backend):
    """A block of equal control scores leaves / enters in index order (the stable sort): the swapped entries are
    the lowest-indexed ones of their tie, whatever order an unstable sort would pick."""
    s1 = [1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.0, 0.0, -1.0, 0.0, -1.0, 0.0, 0.0, -1.0, 0.0, 0.0]
    cands = candidate_set(backend, [-3.0 - v for v in s1], s1, 10)
    minus, plus = set(range(10)), set(range(10, 20))
    selL, selR = masks(cands.ops, 20, minus, plus)
    sL, sR = (float(sum(-3.0 - s1[i] for i in minus)), float(sum(s1[i] for i in minus))), (0.0, 0.0)
    # out first: 1, 4, 7 (s1 = 2), then 0, 2, 3, 5, 6, 8, 9 (s1 = 1); in first: 12, 14, 17 (-1), then 10, 11, 13, ...
    # S1 after j swaps: 13 -> 10 -> 7 -> 4 -> 3 -> 2: kappa = 2 is reached after 5 swaps (0, 2 out; 10, 11 in)
    mm, mp, _, _, sw = one_swap(cands, selL, selR, sL, sR, 2.0)
    assert np.flatnonzero(np.asarray(mm)).tolist() == [2, 3, 5, 6, 8, 9, 10, 12, 14, 17]
    assert np.flatnonzero(np.asarray(mp)).tolist() == [3, 5, 6, 8, 9, 10, 11, 12, 14, 17]
    assert sw == (11, 2)


# the S0 + lam S1 baseline (linear.py) ----------------------------------------------------------------------
def test_linear_combination_adds_in_float64():
    """s0 + lam s1 in float64 for a float32 control score: 0.1 * 3 in float32 is 0.30000001192..., which
    would move entry 0 (-1.7 in float64) above entry 1 (-1.699999995)."""
    s0 = torch.tensor([-2.0, -1.699999995], dtype=torch.float64)
    s1 = torch.tensor([3.0, 0.0], dtype=torch.float32)
    assert reference_selection([-2.0, -1.699999995], [3.0, 0.0], 0.1, 1) == [0]
    assert C.linear_combination(s0, s1, 1, 0.1).tolist() == [True, False]


# the backends ------------------------------------------------------------------------------------------------
def test_numpy_axpy_allocates_one_vector():
    """s0 + lam s1 is written into the product's buffer: one new vector of n floats, not two (15M weights:
    120 MB each)."""
    n = 100_000
    ops, s0, s1 = NumpyOps(), np.full(n, -1.0), np.full(n, 2.0)
    tracemalloc.start()
    try:
        v = ops.axpy(s0, s1, 0.25)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert v.tolist()[:2] == [-0.5, -0.5] and peak < 1.5 * 8 * n


def test_numpy_kth_partitions_only_the_band(monkeypatch):
    """Above SMALL entries NumpyOps.kth partitions only the entries inside the sampled band [lo, hi] (bounds
    included) and counts the entries below lo only when lo is finite; on a permutation of 0..n-1 the k-th value
    is k - 1 and the band's size is known. The real sample's band is a small fraction of the vector: with the
    limits lowered (8,192 entries, a sample of 4,096) about 2 x 5 standard deviations of the sampled rank, 8%."""
    monkeypatch.setattr(backends, "SMALL", 1024)
    monkeypatch.setattr(backends, "SAMPLE", 4096)
    n = 8192
    x = np.random.default_rng(47).permutation(n).astype(np.float64)
    parts, counts = [], []
    real_partition, real_count = np.partition, np.count_nonzero
    monkeypatch.setattr(np, "partition", lambda a, k, *args, **kw: parts.append(a.size) or real_partition(a, k, *args, **kw))
    monkeypatch.setattr(np, "count_nonzero", lambda a, *args, **kw: counts.append(a.size) or real_count(a, *args, **kw))
    inf = math.inf
    for k, lo, hi, band, counted in [
        (n // 2, n // 2 - 4, n // 2 + 2, 7, 1),  # both bounds: [t - 3, t + 3]
        (n // 2, n // 2 - 4, n // 2 - 1, 4, 1),  # the k-th value is the band's largest (hi itself)
        (10, -inf, 12.0, 13, 0),  # no lower bound: x <= t + 3, nothing counted below
        (10, -inf, 9.0, 10, 0),  # hi is the k-th value
        (n - 10, n - 14.0, inf, 14, 1),  # no upper bound: x >= t - 3
    ]:
        parts.clear(), counts.clear()
        assert Guess(lo, hi).kth(x, k) == k - 1
        assert parts == [band] and len(counts) == counted, (k, lo, hi, parts, counts)
    parts.clear()
    assert NumpyOps().kth(x, n // 2) == n // 2 - 1
    assert len(parts) == 1 and parts[0] < n // 4, parts


def counting_ops(backend, guess=None):
    """The backend's ops, counting the order statistics, counts and masked sums they compute; `guess` forces the
    sampled bracket of the k-th value."""

    class Counting(type(cpu_ops(backend))):
        kths = counts = sums = 0

        def kth(self, x, k):
            self.kths += 1
            return super().kth(x, k)

        def count(self, mask):
            self.counts += 1
            return super().count(mask)

        def masked_sum(self, x, mask):
            self.sums += 1
            return super().masked_sum(x, mask)

        def sample_bounds(self, x, k, exact_ok=True):
            return (guess, guess) if guess is not None else super().sample_bounds(x, k, exact_ok)

    return Counting()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kth_bounds_on_a_small_vector_cost_one_order_statistic(backend):
    """On a small vector the sampled bracket is exact (one k-th value); the bound's check then passes with one
    count, and none when the bound is 0 anyway (upper) or the guess is -inf (lower): no second order statistic."""
    x = cpu_ops(backend).asarray(torch.tensor([-1.0, -5.0, 0.5, -3.0, -4.0, 2.0, -2.0, 0.0]))
    for k, value in [(1, -5.0), (2, -4.0), (5, -1.0), (6, 0.0), (7, 0.0)]:  # min(k-th smallest, 0) by hand
        for f in (lower_kth, upper_kth):
            ops = counting_ops(backend)
            assert f(ops, x, k) == value and ops.kths == 1, (f.__name__, k)
        ops = counting_ops(backend)
        upper_kth(ops, x, k)
        assert ops.counts == (1 if value < 0 else 0), k
    ops = counting_ops(backend, -math.inf)
    assert lower_kth(ops, x, 3) == -math.inf and ops.counts == 0 and ops.kths == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_selection_sums_of_an_empty_or_all_negative_selection(backend):
    """d-idxmin{v < 0}: k = 0 selects nothing (sums 0, kappa_min 0); at most k negatives are all selected as
    they are, without an order statistic; kappa_min (w0 = w1) sums its selection once."""
    from sparse_exp.sparsity.cops.selection import select, select_sums

    ops = counting_ops(backend)
    v = ops.asarray(torch.tensor([0.5, -1.0, 0.0, -2.0, 3.0]))
    w = ops.asarray(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert select_sums(ops, v, 0, v, w) == (0.0, 0.0) and C.kappa_min_of(torch.tensor([1.0, -1.0]), 0) == 0.0
    strict, extra = select(ops, v, 2)
    assert as_list(strict) == [False, True, False, True, False] and extra is None and ops.kths == 0
    assert select_sums(ops, v, 3, v, w) == (-3.0, 6.0) and ops.kths == 0
    ops = counting_ops(backend)
    assert C.dual.kappa_min(ops, v, 1) == -2.0 and ops.sums == 1


def test_ops_for_picks_numpy_on_the_cpu_and_torch_elsewhere():
    """The default backend: numpy for CPU tensors, torch on any other device (the meta device stands in for CUDA
    here: ops_for reads only the device's type); a forced backend is honoured where it works."""
    cpu, other = torch.device("cpu"), torch.device("meta")
    assert type(ops_for(cpu, None)) is NumpyOps and type(ops_for(cpu, "torch")) is backends.TorchOps
    assert type(ops_for(other, None)) is backends.TorchOps and type(ops_for(other, "torch")) is backends.TorchOps
    with pytest.raises(ValueError, match="CPU tensors only"):
        ops_for(other, "numpy")
