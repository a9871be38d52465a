"""COPS solver (Algorithm 4.1, sparse_exp/sparsity/cops/) against scipy's HiGHS and the thesis.

The LP (4.13): minimise s0.m subject to s1.m <= kappa, 1.m <= d, 0 <= m <= 1.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from sparse_exp.sparsity import cops as C
from sparse_exp.sparsity.cops import bracket as cops_bracket
from sparse_exp.sparsity.cops.backends import NumpyOps
from sparse_exp.sparsity.select import kept_count

GRID = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 0.9999, 0.99999]


# helpers ----------------------------------------------------------------------------------------
def lp_optimum(s0: np.ndarray, s1: np.ndarray, d: int, kappa: float) -> float:
    D = len(s0)
    res = linprog(
        s0, A_ub=np.vstack([s1, np.ones(D)]), b_ub=np.array([kappa, d]), bounds=(0, 1), method="highs-ds",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    assert res.status == 0, res.message
    return float(res.fun)


def importances(kind: str, D: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Target (SNIP-like, >= 0) and control importances of several shapes."""
    if kind == "grasp":  # heavy-tailed target, mixed-sign control correlated with it
        g, th = rng.standard_normal(D), rng.standard_normal(D)
        return np.abs(g * th), th * (0.5 * g + rng.standard_normal(D))
    if kind == "ties":  # integer scores: many ties, some zero target entries
        return rng.integers(0, 5, D).astype(float), rng.integers(-3, 5, D).astype(float)
    if kind == "signed":  # both mixed-sign
        return rng.standard_normal(D), rng.standard_normal(D)
    if kind == "magnitude":  # positive control correlated with the target
        t = np.abs(rng.standard_normal(D))
        return t, np.abs(rng.standard_normal(D)) + 0.3 * t
    raise ValueError(kind)


def normalised(imp0, imp1):
    s0, _ = C.normalise(torch.as_tensor(imp0))
    s1, _ = C.normalise(torch.as_tensor(imp1))
    return s0, s1


def mask_scores(s0, s1, mask) -> tuple[float, float]:
    m = mask.to(torch.float64)
    return float(s0 @ m), float(s1 @ m)


def sim(a: torch.Tensor, b: torch.Tensor) -> float:
    den = max(int(a.sum()), int(b.sum()))
    return float((a & b).sum()) / den if den else 1.0


def sorted_selection(v: torch.Tensor, d: int) -> torch.Tensor:
    """d-idxmin{v < 0} by a full stable sort (ties by index): the obvious implementation."""
    idx = torch.sort(v, stable=True).indices[:d]
    idx = idx[v[idx] < 0]
    m = torch.zeros_like(v, dtype=torch.bool)
    m[idx] = True
    return m


# the LP: optimum through the dual == HiGHS --------------------------------------------------------
@pytest.mark.parametrize("kind", ["grasp", "ties", "signed", "magnitude"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_relaxed_optimum_matches_linprog(kind, backend):
    rng = np.random.default_rng(hash(kind) % 2**32)
    checked = 0
    for trial in range(8):
        D = int(rng.integers(5, 3000))
        s0, s1 = normalised(*importances(kind, D, rng))
        d = int(rng.integers(1, D + 1))
        alpha = [0.05, 0.3, 0.5, 0.9, 0.99, 0.9999, 0.99999, float(rng.uniform())][trial % 8]
        r = C.solve(s0, s1, d, alpha=alpha, backend=backend, with_masks=True)
        assert r.kappa == pytest.approx(alpha * r.kappa_min, rel=1e-15, abs=0)
        # kappa_min = 0 is defined as "no constraint" (the LP with kappa = 0 would keep only s1 = 0 entries)
        kappa = r.kappa if r.kappa_min < 0 else 1e9
        ref = lp_optimum(s0.numpy(), s1.numpy(), d, kappa)
        assert abs(r.relaxed_objective - ref) <= 1e-7 * abs(ref) + 1e-15, (trial, D, d, alpha, r.relaxed_objective, ref)
        assert abs(r.dual_value - ref) <= 1e-7 * abs(ref) + 1e-15  # strong duality, g(lam*) = p*
        checked += 1
    assert checked == 8


@pytest.mark.parametrize("kappa_rel", [0.9999, 0.999, 0.5, 0.0, -0.2, 0.3])
def test_explicit_kappa_matches_linprog(kappa_rel):
    """kappa given directly (including kappa >= 0 and kappa above S1 of the unconstrained mask)."""
    rng = np.random.default_rng(7)
    for _ in range(4):
        D = int(rng.integers(50, 2000))
        s0, s1 = normalised(*importances("grasp", D, rng))
        d = int(rng.integers(1, D))
        kmin = C.kappa_min_of(s1, d)
        kappa = kappa_rel * kmin if kappa_rel >= 0 else -kappa_rel * abs(kmin)
        r = C.solve(s0, s1, d, kappa=kappa)
        ref = lp_optimum(s0.numpy(), s1.numpy(), d, kappa)
        assert abs(r.relaxed_objective - ref) <= 1e-7 * abs(ref) + 1e-15
        assert r.s1_plus <= kappa + 1e-15


def test_kappa_min_is_the_best_control_score():
    rng = np.random.default_rng(3)
    s1 = torch.as_tensor(rng.standard_normal(1000))
    for d in (1, 10, 400, 499, 1000):
        expect = float(torch.sort(s1).values[:d].clamp(max=0).sum())
        assert C.kappa_min_of(s1, d) == pytest.approx(expect, rel=1e-13)


# Theorem 4.3.1 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["grasp", "ties", "signed"])
def test_projected_masks_obey_theorem_4_3_1(kind):
    rng = np.random.default_rng(11)
    for trial in range(10):
        D = int(rng.integers(20, 2500))
        s0, s1 = normalised(*importances(kind, D, rng))
        d = int(rng.integers(1, D))
        r = C.solve(s0, s1, d, alpha=float(rng.choice(GRID)), with_masks=True)
        mp, mm = r.mask_plus, r.mask_minus
        assert torch.equal(r.mask, mp)  # m+ by default
        sp, sm = mask_scores(s0, s1, mp), mask_scores(s0, s1, mm)
        assert sp == pytest.approx((r.s0_plus, r.s1_plus), rel=1e-12, abs=1e-15)
        assert sm == pytest.approx((r.s0_minus, r.s1_minus), rel=1e-12, abs=1e-15)
        tol = 1e-13
        # (4.25): S1(m+) <= kappa <= S1(m-) and S0(m-) <= S0(m*) <= S0(m+)
        assert r.s1_plus <= r.kappa + tol
        if r.constraint_active:
            assert r.s1_minus >= r.kappa - tol
        p_star = lp_optimum(s0.numpy(), s1.numpy(), d, r.kappa)
        assert r.s0_minus <= p_star + tol <= r.s0_plus + 2 * tol
        # m+ and m- differ by (at most) one swap: supp m+ \ m- = {i+}, supp m- \ m+ = {i-}
        plus_only = torch.nonzero(mp & ~mm).flatten().tolist()
        minus_only = torch.nonzero(mm & ~mp).flatten().tolist()
        assert len(plus_only) <= 1 and len(minus_only) <= 1
        if r.swap is not None:
            ip, im = r.swap
            assert plus_only == ([ip] if ip is not None else []) and minus_only == ([im] if im is not None else [])
            # (4.26), an entry leaving the negative region swaps with the empty slot (score 0)
            s0p, s1p = (float(s0[ip]), float(s1[ip])) if ip is not None else (0.0, 0.0)
            s0m, s1m = (float(s0[im]), float(s1[im])) if im is not None else (0.0, 0.0)
            assert r.s0_plus - r.s0_minus <= s0p - s0m + tol
            assert r.s1_minus - r.s1_plus <= s1m - s1p + tol
        # both masks minimise s0 + lam* s1 over V_{0,d} (they are in d-idxmin at lam*)
        if r.constraint_active and math.isfinite(r.lam):
            v = s0 + r.lam * s1
            best = float(torch.sort(v).values[:d].clamp(max=0).sum())
            for m in (mp, mm):
                assert float(v[m].sum()) == pytest.approx(best, rel=1e-9, abs=1e-14)


def test_bounds_around_the_discrete_optimum():
    """(4.25) S0(m-) <= S0(m*) <= S0(m_bar) <= S0(m+) with m_bar the brute-force optimum of (4.11)."""
    rng = np.random.default_rng(5)
    for _ in range(15):
        D = int(rng.integers(4, 12))
        s0, s1 = normalised(*importances("grasp", D, rng))
        d = int(rng.integers(1, D))
        r = C.solve(s0, s1, d, alpha=float(rng.choice([0.3, 0.7, 0.9, 0.99])))
        if r.kappa_min == 0.0:
            continue  # defined as unconstrained (test_kappa_min_zero_is_unconstrained)
        best = math.inf
        for k in range(d + 1):
            for sub in itertools.combinations(range(D), k):
                idx = list(sub)
                if float(s1[idx].sum()) <= r.kappa + 1e-15:
                    best = min(best, float(s0[idx].sum()))
        p_star = lp_optimum(s0.numpy(), s1.numpy(), d, r.kappa)
        assert r.s0_minus <= p_star + 1e-13
        assert p_star <= best + 1e-13
        assert best <= r.s0_plus + 1e-13


# balance factor -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["grasp", "ties", "signed", "magnitude"])
def test_alpha_zero_is_exactly_the_target_only_mask(kind):
    rng = np.random.default_rng(13)
    for _ in range(5):
        D = int(rng.integers(2, 3000))
        s0, s1 = normalised(*importances(kind, D, rng))
        d = int(rng.integers(0, D + 1))
        r = C.solve(s0, s1, d, alpha=0.0)
        assert torch.equal(r.mask, C.select_smallest(s0, d))
        assert r.lam == 0.0 and r.steps == 0 and not r.constraint_active


def test_similarity_to_control_mask_grows_monotonically_to_one():
    """Fig. 4.6: along the alpha grid sim(m(alpha), m(1)) increases to ~1, sim(m(alpha), m(0)) decreases."""
    rng = np.random.default_rng(17)
    D = 20000
    s0, s1 = normalised(*importances("grasp", D, rng))
    for q in (0.9, 0.99):
        d = kept_count(q, D)
        m0, m1 = C.select_smallest(s0, d), C.select_smallest(s1, d)
        to_target, to_control = [], []
        for alpha in GRID:
            r = C.solve(s0, s1, d, alpha=alpha)
            to_target.append(sim(r.mask, m0))
            to_control.append(sim(r.mask, m1))
        assert all(b >= a for a, b in zip(to_control, to_control[1:])), to_control
        assert all(b <= a for a, b in zip(to_target, to_target[1:])), to_target
        assert to_control[-1] > 0.99 and to_target[0] > 0.9


def test_lambda_grows_with_alpha_and_s1_tracks_kappa():
    rng = np.random.default_rng(19)
    s0, s1 = normalised(*importances("grasp", 5000, rng))
    lams = []
    for alpha in GRID:
        r = C.solve(s0, s1, 500, alpha=alpha)
        lams.append(r.lam)
        assert r.s1 <= r.kappa + 1e-15
        assert r.steps <= 60
    assert all(b >= a for a, b in zip(lams, lams[1:]))


# implementation paths -------------------------------------------------------------------------------
def test_backends_agree():
    rng = np.random.default_rng(23)
    for kind in ("grasp", "ties"):
        s0, s1 = normalised(*importances(kind, 30000, rng))
        for alpha in (0.1, 0.9, 0.9999):
            a = C.solve(s0, s1, 3000, alpha=alpha, backend="numpy")
            b = C.solve(s0, s1, 3000, alpha=alpha, backend="torch")
            assert torch.equal(a.mask, b.mask)
            assert a.steps == b.steps and a.lam_plus == b.lam_plus
            assert a.lam == pytest.approx(b.lam, rel=1e-9)


@pytest.mark.big
@pytest.mark.parametrize("guess_factor,backend", [(None, "numpy"), (1e-3, "numpy"), (1e3, "numpy"), (None, "torch")])
def test_large_problem_candidate_path_equals_reference(monkeypatch, guess_factor, backend):
    """Above the direct-evaluation size the solver estimates lam* on a subsample, brackets it and
    shrinks the candidate set; a wrong estimate (forced) only costs time, never changes the mask."""
    rng = np.random.default_rng(29)
    D = 600_000
    s0, s1 = normalised(*importances("grasp", D, rng))
    d = kept_count(0.95, D)
    calls = []
    if guess_factor is not None:
        real = cops_bracket.estimate
        monkeypatch.setattr(cops_bracket, "estimate", lambda *a: calls.append(a) or real(*a) * guess_factor)
    r = C.solve(s0, s1, d, alpha=0.99, with_masks=True, backend=backend)
    assert len(calls) == (guess_factor is not None)  # the forced estimate was used
    assert r.candidates < D // 10
    # independent check by full sorts: just left of lam* the mask is m- (S1 > kappa), just right m+
    left, right = sorted_selection(s0 + r.lam * (1 - 1e-9) * s1, d), sorted_selection(s0 + r.lam * (1 + 1e-9) * s1, d)
    assert mask_scores(s0, s1, left)[1] > r.kappa >= mask_scores(s0, s1, right)[1]
    assert torch.equal(r.mask_plus, right) and torch.equal(r.mask_minus, left)


def test_projection_minus_and_refine_off():
    rng = np.random.default_rng(31)
    s0, s1 = normalised(*importances("grasp", 4000, rng))
    plus = C.solve(s0, s1, 400, alpha=0.9, with_masks=True)
    minus = C.solve(s0, s1, 400, alpha=0.9, projection="minus")
    assert torch.equal(minus.mask, plus.mask_minus) and minus.s1 >= minus.kappa
    raw = C.solve(s0, s1, 400, alpha=0.9, refine=False)  # ends of the eps-bracket
    assert raw.s1 <= raw.kappa and abs(raw.lam - plus.lam) <= 2 * C.EPS_N
    assert raw.steps == plus.steps


def test_linear_combination_baseline():
    rng = np.random.default_rng(37)
    s0, s1 = normalised(*importances("grasp", 3000, rng))
    for lam in (0.0, 0.5, 3.0, 90.0):
        m = C.linear_combination(s0, s1, 300, lam)
        assert torch.equal(m, C.select_smallest(s0 + lam * s1, 300))
    # duality: at lam* the linear combination is one of the COPS masks m+/m-
    r = C.solve(s0, s1, 300, alpha=0.9, with_masks=True)
    m = C.linear_combination(s0, s1, 300, r.lam)
    assert torch.equal(m, r.mask_plus) or torch.equal(m, r.mask_minus)
    with pytest.raises(ValueError, match="lam"):
        C.linear_combination(s0, s1, 300, -1.0)


def test_select_smallest_ties_by_lower_index():
    v = torch.tensor([-1.0, -2.0, -1.0, -1.0, 0.0, -3.0], dtype=torch.float64)
    assert C.select_smallest(v, 3).tolist() == [True, True, False, False, False, True]
    assert C.select_smallest(v, 4).tolist() == [True, True, True, False, False, True]
    assert C.select_smallest(v, 6).tolist() == [True, True, True, True, False, True]  # 0 is never kept


# degenerate inputs: defined answers, clear messages, no hang ------------------------------------------
def test_q_one_keeps_nothing_and_q_zero_keeps_every_negative():
    rng = np.random.default_rng(41)
    t, c = importances("signed", 1000, rng)
    r = C.cops_mask(torch.as_tensor(t), torch.as_tensor(c), 0, alpha=0.9)
    assert r.kept == 0 and r.lam == 0.0
    r = C.cops_mask(torch.as_tensor(t), torch.as_tensor(c), 1000, alpha=0.9, with_masks=True)
    s0, s1 = normalised(t, c)
    assert abs(r.relaxed_objective - lp_optimum(s0.numpy(), s1.numpy(), 1000, r.kappa)) < 1e-9
    assert r.kept < 1000 and any("negative" in m for m in r.messages)
    assert bool((s0[r.mask] + r.lam * s1[r.mask] <= 0).all())


def test_zero_importances():
    rng = np.random.default_rng(43)
    t, c = importances("grasp", 2000, rng)
    zero = torch.zeros(2000)
    r = C.cops_mask(torch.as_tensor(t), zero, 200, alpha=0.9)  # no control information: target only
    assert torch.equal(r.mask, C.select_smallest(normalised(t, t)[0], 200))
    assert any("control importance is zero" in m for m in r.messages)
    assert any("kappa_min = 0" in m for m in r.messages)
    r = C.cops_mask(zero, torch.as_tensor(c), 200, alpha=0.9)  # no target information: control only
    control_only = C.select_smallest(normalised(c, c)[0], 200)
    # every entry crosses zero at lam* = 0: m+ is the shortest prefix of the control order with S1 <= kappa
    assert r.lam == 0.0 and r.s1 <= r.kappa and not bool((r.mask & ~control_only).any())
    assert any("target importance is zero" in m for m in r.messages)
    r = C.cops_mask(zero, zero, 200, alpha=0.9)
    assert r.kept == 0 and len(r.messages) >= 3


def test_constant_scores_and_ties():
    ones = torch.ones(1000)
    r = C.cops_mask(ones, ones, 100, alpha=0.9)
    assert r.mask.nonzero().flatten().tolist() == list(range(100))  # ties by the lower index
    rng = np.random.default_rng(47)
    c = torch.as_tensor(rng.standard_normal(1000))
    r = C.cops_mask(ones, c, 100, alpha=0.5, with_masks=True)  # constant target: every mask has S0 = -d/D
    assert r.kept == 100 and r.s1 <= r.kappa + 1e-15 and r.s0 == pytest.approx(-0.1)
    assert int((r.mask_plus ^ r.mask_minus).sum()) == 2  # one swap (Theorem 4.3.1, block of ties)
    assert r.relaxed_objective == pytest.approx(-0.1)


def test_kappa_min_zero_is_unconstrained():
    rng = np.random.default_rng(53)
    t = torch.as_tensor(np.abs(rng.standard_normal(500)))
    c = -torch.as_tensor(np.abs(rng.standard_normal(500)))  # no positive control importance
    r = C.cops_mask(t, c, 50, alpha=0.99)
    assert r.kappa_min == 0.0 and r.lam == 0.0
    assert torch.equal(r.mask, C.select_smallest(normalised(t, t)[0], 50))
    assert any("kappa_min = 0" in m for m in r.messages)


def test_fewer_negative_scores_than_d():
    t = torch.tensor([3.0, 0.0, 1.0, 0.0, -1.0, 2.0])
    c = torch.tensor([1.0, -1.0, -1.0, -2.0, 1.0, 0.5])  # at most 4 entries of s0 + lam s1 are negative
    r = C.cops_mask(t, c, 5, alpha=0.5)
    assert r.kept <= 4 and any("only" in m for m in r.messages)
    s0, s1 = normalised(t.double(), c.double())
    assert abs(r.relaxed_objective - lp_optimum(s0.numpy(), s1.numpy(), 5, r.kappa)) < 1e-12


def test_kappa_at_and_below_kappa_min():
    rng = np.random.default_rng(59)
    s0, s1 = normalised(*importances("grasp", 800, rng))
    kmin = C.kappa_min_of(s1, 80)
    with pytest.raises(ValueError, match="kappa_min"):
        C.solve(s0, s1, 80, kappa=kmin * 1.01)
    r = C.solve(s0, s1, 80, kappa=kmin)  # Slater fails: the limit mask (control-only)
    assert r.lam == math.inf and r.s1 == pytest.approx(kmin, rel=1e-12)
    assert torch.equal(r.mask, C.select_smallest(s1, 80))
    r = C.solve(s0, s1, 80, alpha=1 - 1e-13)  # lam* enormous but finite: terminates, feasible
    assert r.s1 <= r.kappa + 1e-15


def test_invalid_inputs_are_rejected():
    s = torch.randn(10, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha"):
        C.solve(s, s, 5, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        C.solve(s, s, 5, alpha=-0.1)
    with pytest.raises(ValueError, match="projection"):
        C.solve(s, s, 5, alpha=0.5, projection="both")
    with pytest.raises(ValueError, match="NaN"):
        C.solve(torch.tensor([0.0, float("nan")]), torch.zeros(2), 1, alpha=0.5)
    with pytest.raises(ValueError, match="NaN"):
        C.normalise(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="length"):
        C.solve(s, s[:5], 2, alpha=0.5)


def test_normalisation():
    x = torch.tensor([1.0, -3.0, 0.0, 4.0])
    s, msg = C.normalise(x)
    assert msg is None and s.dtype == torch.float64
    assert s.tolist() == pytest.approx([-0.125, 0.375, 0.0, -0.5])
    assert x.tolist() == [1.0, -3.0, 0.0, 4.0]  # the input is untouched


@pytest.mark.big
def test_large_tie_block_is_fast():
    """A constant target at lam* = 0: m- and m+ differ in ~d entries; the one-swap walk of
    Theorem 4.3.1 is vectorised (this took minutes with a per-swap loop)."""
    import time

    D = 400_000
    c = torch.as_tensor(np.random.default_rng(61).standard_normal(D))
    t0 = time.perf_counter()
    r = C.cops_mask(torch.ones(D), c, D // 10, alpha=0.5, with_masks=True)
    assert time.perf_counter() - t0 < 10
    assert r.kept == D // 10 and r.s1 <= r.kappa
    assert int((r.mask_plus ^ r.mask_minus).sum()) == 2


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_limit_mask_is_the_lexicographic_choice(backend):
    """I_lam for lam -> infinity (projection.limit_mask): the d first entries in (s1, s0, index) order among
    those with s1 < 0, or s1 = 0 and s0 < 0 - against a sort written here, on small vectors full of ties."""
    from sparse_exp.sparsity.cops.backends import ops_for
    from sparse_exp.sparsity.cops.projection import limit_mask

    ops = ops_for(torch.device("cpu"), backend)
    rng = np.random.default_rng(5)
    for trial in range(200):
        D = int(rng.integers(1, 12))
        s0 = rng.integers(-2, 3, D).astype(np.float64)
        s1 = rng.integers(-2, 2, D).astype(np.float64)
        d = int(rng.integers(0, D + 1))
        eligible = [i for i in range(D) if s1[i] < 0 or (s1[i] == 0 and s0[i] < 0)]
        chosen = sorted(eligible, key=lambda i: (s1[i], s0[i], i))[:d]
        got = limit_mask(ops, ops.asarray(torch.from_numpy(s0)), ops.asarray(torch.from_numpy(s1)), d)
        got = np.asarray(ops.to_torch(got)).astype(bool)
        assert sorted(np.flatnonzero(got).tolist()) == sorted(chosen), (trial, s0, s1, d)


# the building blocks on their own: fast tests that pin what the solver's end-to-end tests only imply ---------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kth_bounds_are_verified_whatever_the_sample_guesses(backend):
    """selection.lower_kth / upper_kth bound min(k-th smallest, 0) starting from a sampled guess that one count
    verifies. On small vectors the sample is the vector itself and the bounds are exact; a wrong guess (forced
    here) gives a looser but still valid bound, or the exact value when verification falls back."""
    from sparse_exp.sparsity.cops.backends import ops_for
    from sparse_exp.sparsity.cops.selection import lower_kth, upper_kth

    ops = ops_for(torch.device("cpu"), backend)

    class Guess(type(ops)):
        def __init__(self, guess):
            super().__init__()
            self.guess = guess

        def sample_bounds(self, x, k, exact_ok=True):
            return self.guess, self.guess

    x = ops.asarray(torch.tensor([-1.0, -5.0, 0.5, -3.0, -4.0, 2.0, -2.0]))
    for k, bound in [(1, -5.0), (2, -4.0), (5, -1.0), (6, 0.0), (7, 0.0)]:  # min(k-th smallest, 0) by hand
        assert lower_kth(ops, x, k) == bound == upper_kth(ops, x, k), k
        for guess in (-100.0, -4.5, -3.5, -2.5, -1.0, 0.0, 1.0):
            assert lower_kth(Guess(guess), x, k) <= bound <= upper_kth(Guess(guess), x, k), (k, guess)
        # far-off guesses fail verification: the fallback is the exact value
        assert lower_kth(Guess(1e300), x, k) == bound == upper_kth(Guess(-1e300), x, k), k
    assert lower_kth(Guess(-3.5), x, 2) == -7.0  # 2 entries below -3.5 is not "fewer than 2": one step lower
    negative = ops.asarray(torch.tensor([-3.0, -1.0, -2.0]))
    assert lower_kth(ops, negative, 3) == -1.0 == upper_kth(ops, negative, 3)  # k = len: the largest, if negative
    for f in (lower_kth, upper_kth):
        assert f(ops, x, 0) == -math.inf and f(ops, x, 8) == 0.0  # nothing to bound / k > len: 0


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_backend_primitives(backend):
    """The few primitives whose misbehaviour the solver would mostly hide: float64 copies, boolean zeros, the
    |max| (0 for an empty vector) and min_max, whose max overwrites b (the callers rely on no extra copy)."""
    from sparse_exp.sparsity.cops.backends import ops_for

    ops = ops_for(torch.device("cpu"), backend)
    x = ops.asarray(torch.tensor([-3.0, 2.0], dtype=torch.float32))
    assert np.asarray(x).dtype == np.float64
    assert ops.abs_max(x) == 3.0 and ops.abs_max(ops.asarray(torch.tensor([1.0, 2.5]))) == 2.5
    assert ops.abs_max(ops.asarray(torch.zeros(0))) == 0.0
    z = ops.zeros_bool(3, x)
    assert np.asarray(z).dtype == np.bool_ and not np.asarray(z).any()
    a, b = ops.asarray(torch.tensor([1.0, 5.0])), ops.asarray(torch.tensor([4.0, 2.0]))
    lo, hi = ops.min_max(a, b)
    assert np.asarray(lo).tolist() == [1.0, 2.0] and np.asarray(hi).tolist() == [4.0, 5.0] and hi is b


def test_the_backend_argument_reaches_the_solver():
    """Every entry point hands `backend` on: an unknown one is refused, not silently replaced by the default."""
    s = torch.tensor([0.5, -1.0, 0.25])
    for call in (lambda: C.cops_mask(s, s, 1, alpha=0.5, backend="bogus"), lambda: C.kappa_min_of(s, 1, backend="bogus"),
                 lambda: C.select_smallest(s, 1, backend="bogus"), lambda: C.linear_combination(s, s, 1, 0.5, backend="bogus")):
        with pytest.raises(ValueError, match="unknown COPS backend 'bogus'"):
            call()


def test_cops_mask_hands_on_eps_projection_and_with_masks():
    rng = np.random.default_rng(41)
    t, c = (torch.as_tensor(v) for v in importances("grasp", 2000, rng))
    plain = C.cops_mask(t, c, 200, alpha=0.9)
    assert plain.mask_plus is None and plain.mask_minus is None and plain.projection == "plus"  # with_masks=False
    coarse = C.cops_mask(t, c, 200, alpha=0.9, eps=1e-2, projection="minus", with_masks=True)
    s0, s1 = normalised(t.numpy(), c.numpy())
    direct = C.solve(s0, s1, 200, alpha=0.9, eps=1e-2, projection="minus")
    assert coarse.projection == "minus" and torch.equal(coarse.mask, coarse.mask_minus) and torch.equal(coarse.mask, direct.mask)
    assert coarse.steps == direct.steps < plain.steps  # a coarser eps stops the bisection earlier


def test_limit_results_report_their_figures():
    """lam* = 0 (the constraint is slack) and lam* -> infinity (kappa = kappa_min) end the solver early; their
    figures (metrics.json `cops`) are set by hand: no bisection step, and lam_plus / lam_bisection = lam*."""
    s0 = torch.tensor([-0.5, 0.25, -0.125, 0.125], dtype=torch.float64)
    s1 = torch.tensor([0.25, -0.25, -0.25, 0.25], dtype=torch.float64)
    slack = C.solve(s0, s1, 1, kappa=1.0)  # S1(m(0)) = 0.25 <= kappa: lam* = 0, m(0) = {0}
    assert slack.mask.tolist() == [True, False, False, False] and (slack.s0, slack.s1) == (-0.5, 0.25)
    assert (slack.lam, slack.lam_bisection, slack.lam_plus, slack.steps) == (0.0, 0.0, 0.0, 0)
    assert slack.evaluations == 1 and slack.candidates == 4 and slack.constraint_active is False
    limit = C.solve(s0, s1, 1, kappa=-0.25)  # kappa = kappa_min: the control-only mask, ties broken by the target
    assert limit.mask.tolist() == [False, False, True, False] and (limit.s0, limit.s1) == (-0.125, -0.25)
    assert (limit.lam, limit.lam_bisection, limit.lam_plus, limit.steps) == (math.inf,) * 3 + (0,)
    assert limit.evaluations == 0 and limit.candidates == 0
    off = C.solve(s0, s1, 1, alpha=0.0)  # alpha = 0: the constraint is off, nothing evaluated before
    assert off.mask.tolist() == [True, False, False, False] and off.evaluations == 1 and off.constraint_active is False


def test_reported_sums_are_the_sums_over_the_mask():
    """S0 and S1 of the result equal the sums over its masks, also after the candidate set was reduced (D > 4096:
    the sure-in entries are then counted apart)."""
    rng = np.random.default_rng(43)
    s0, s1 = normalised(*importances("grasp", 30000, rng))
    for backend in ("numpy", "torch"):
        r = C.solve(s0, s1, 3000, alpha=0.9, backend=backend, with_masks=True)
        assert r.candidates < 30000
        for mask, (a, b) in ((r.mask, (r.s0, r.s1)), (r.mask_plus, (r.s0_plus, r.s1_plus)), (r.mask_minus, (r.s0_minus, r.s1_minus))):
            ref = mask_scores(s0, s1, mask)
            assert a == pytest.approx(ref[0], rel=1e-12) and b == pytest.approx(ref[1], rel=1e-12), backend


class Guess(NumpyOps):
    """NumpyOps whose sampled bracket of the k-th value is forced (the callers must verify it)."""

    def __init__(self, lo, hi):
        super().__init__()
        self.bounds = (lo, hi)

    def sample_bounds(self, x, k, exact_ok=True):
        return self.bounds


def test_numpy_kth_of_a_large_vector_against_a_sort():
    """NumpyOps.kth above SMALL entries: the k-th value is searched inside the band [lo, hi] of a sampled guess,
    below = #{x < lo} entries skipped, with an exact fallback when the band misses. Checked against a full sort on
    a vector without ties (a permutation) and one full of ties (integers), for the real sample and for forced
    guesses that hit every branch: no bound, one bound, a band ending on tied values, and bands that miss."""
    from sparse_exp.sparsity.cops.backends import SMALL

    rng = np.random.default_rng(47)
    n = SMALL + 1000
    inf = math.inf
    for x in (rng.permutation(n).astype(np.float64), rng.integers(-50, 50, n).astype(np.float64)):
        ref = np.sort(x)
        for k in (1, 2, 777, n // 2, n - 1, n):
            t = ref[k - 1]
            assert NumpyOps().kth(x, k) == t, k
            below_k = ref[k] if k < n else inf  # exactly k entries lie below it (without ties) -> fallback
            for lo, hi in [(-inf, inf), (-inf, t), (-inf, t + 3), (t, inf), (t - 3, inf), (t, t), (t - 3, t + 3),
                           (t + 1, t + 5), (t - 5, t - 1), (below_k, below_k + 5)]:
                assert Guess(lo, hi).kth(x, k) == t, (k, lo, hi)


@pytest.fixture
def small_limits(monkeypatch):
    """The size limits of the large-problem path (backends.SMALL, SAMPLE) lowered 128-fold, so that a problem of
    20,000 entries takes every step the 600,000-entry tests take: the subsample estimate of lam*, the bracket
    widening, the candidate reduction, the secant narrowing and sampled order statistics (a fast twin of
    test_large_problem_candidate_path_equals_reference, which the mutation check runs instead of it)."""
    from sparse_exp.sparsity.cops import backends, bisection

    for module, name, value in ((backends, "SMALL", 1024), (backends, "SAMPLE", 512), (bisection, "SMALL", 1024),
                                (cops_bracket, "SMALL", 1024), (cops_bracket, "SAMPLE", 512)):
        monkeypatch.setattr(module, name, value)


@pytest.mark.parametrize("guess_factor,backend", [(None, "numpy"), (1e-3, "numpy"), (1e3, "numpy"), (None, "torch")])
@pytest.mark.parametrize("kind", ["grasp", "signed"])
def test_large_problem_path_on_a_small_problem(small_limits, monkeypatch, guess_factor, backend, kind):
    rng = np.random.default_rng(53)
    D = 20_000
    s0, s1 = normalised(*importances(kind, D, rng))
    d = kept_count(0.95, D)
    calls = []
    real = cops_bracket.estimate
    monkeypatch.setattr(cops_bracket, "estimate", lambda *a: calls.append(a) or real(*a) * (guess_factor or 1.0))
    r = C.solve(s0, s1, d, alpha=0.99, with_masks=True, backend=backend)
    assert len(calls) == 1 and r.candidates < D // 4
    left, right = sorted_selection(s0 + r.lam * (1 - 1e-9) * s1, d), sorted_selection(s0 + r.lam * (1 + 1e-9) * s1, d)
    assert mask_scores(s0, s1, left)[1] > r.kappa >= mask_scores(s0, s1, right)[1]
    assert torch.equal(r.mask_plus, right) and torch.equal(r.mask_minus, left)


def test_tie_block_walk_on_a_small_problem():
    """test_large_tie_block_is_fast's case at 4,000 entries (its fast twin for the mutation check): a constant
    target puts lam* at 0 with a tie block of all entries; the one-swap walk ends with m- and m+ two entries apart."""
    D = 4000
    c = torch.as_tensor(np.random.default_rng(61).standard_normal(D))
    r = C.cops_mask(torch.ones(D), c, D // 10, alpha=0.5, with_masks=True)
    assert r.kept == D // 10 and r.s1 <= r.kappa
    assert int((r.mask_plus ^ r.mask_minus).sum()) == 2


def _flat_slope_cases(rng, D, d, trials):
    """Integer scores (every sum exact) and kappa = S1 of the mask at lam in {0.5, 1, 3}: g'(lam) = 0 on a whole
    interval around that lam, where m_lam is constant (the bisection can then hit g' = 0 exactly)."""
    for _ in range(trials):
        s0 = torch.tensor(rng.integers(-8, 4, D), dtype=torch.float64)
        s1 = torch.tensor(rng.integers(-8, 8, D), dtype=torch.float64)
        for lam in (0.5, 1.0, 3.0):
            m = C.select_smallest(s0 + lam * s1, d)
            kappa = float(s1[m].sum())
            if kappa > C.kappa_min_of(s1, d):
                yield s0, s1, m, kappa


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_zero_slope_is_an_exact_optimum(backend):
    """S1(m_lam) = kappa exactly: that mask is optimal for the LP as it is (m+ = m-, S1 = kappa, p* = S0)."""
    cases = list(_flat_slope_cases(np.random.default_rng(3), 40, 10, 6))
    assert len(cases) == 16
    for s0, s1, m, kappa in cases:
        r = C.solve(s0, s1, 10, kappa=kappa, with_masks=True, backend=backend)
        assert torch.equal(r.mask_plus, m) and torch.equal(r.mask_minus, m), kappa
        assert r.s1 == kappa and r.relaxed_objective == r.dual_value == float(s0[m].sum())


def test_a_zero_slope_on_the_large_problem_path(small_limits):
    """The same on 6,000 entries with the size limits lowered (the secant narrowing and the candidate reduction run)."""
    cases = list(_flat_slope_cases(np.random.default_rng(5), 6000, 600, 2))
    assert cases
    for s0, s1, m, kappa in cases:
        r = C.solve(s0, s1, 600, kappa=kappa, with_masks=True)
        assert torch.equal(r.mask_plus, m) and torch.equal(r.mask_minus, m) and r.s1 == kappa
