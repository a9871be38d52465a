"""find_bracket (cops/bracket.py) and the solver's driver (cops/solver.py, cops/result.py): the first bracket of
lambda*, its widening, and the result a solve returns.

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs."""

from __future__ import annotations

import math

import pytest
import torch

from sparse_exp.sparsity import cops as C
from sparse_exp.sparsity.cops import bracket as cops_bracket
from sparse_exp.sparsity.cops.backends import ops_for
from sparse_exp.sparsity.cops.dual import CandidateSet

# Hand-made problems with d = 1 whose slope g'(lam) = S1(m_lam) - kappa is known exactly at every lam. Entry A
# (index 0) is kept alone until another entry's s0 + lam s1 drops below -c1; ties go to the lower index.
#   two(c):        A = (-c, 0), B = (0, -1); kappa = -1/2: g' = +1/2 on [0, c], -1/2 beyond, lam* = c.
#   three(c1, c2): A = (-c1, 0), B = (0, -1), C = (c2, -2); kappa = -1: g' = +1 on [0, c1], 0 on (c1, c2]
#                  (m_lam = {B}), -1 beyond (m_lam = {C}).
# Every s0 + lam s1 below is exact in float64 for the lams used (powers of two or few-bit values).
TOO_LARGE = "lam* exceeds 2^80"


def two(c: float, pad: int = 0):
    """(s0, s1) of two(c), with `pad` entries (1, 1) after A and B that are never kept."""
    return (torch.tensor([-c, 0.0] + [1.0] * pad, dtype=torch.float64),
            torch.tensor([0.0, -1.0] + [1.0] * pad, dtype=torch.float64))


def three(c1: float, c2: float):
    return (torch.tensor([-c1, 0.0, c2], dtype=torch.float64), torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64))


def bracket_of(s0, s1, kap: float, alpha=None):
    """find_bracket on the full problem: (a, b), the evaluated lams (`known`), the messages and the candidates."""
    ops = ops_for(torch.device("cpu"), None)
    x0, x1 = ops.asarray(s0), ops.asarray(s1)
    cands = CandidateSet(ops, x0, x1, 1, (ops.abs_max(x0), ops.abs_max(x1)))
    known, messages = {}, []
    a, b = cops_bracket.find_bracket(cands, kap, alpha, known, messages)
    return a, b, known, messages, cands


def slope(known, lam, kap):
    return known[lam][1] - kap


@pytest.fixture
def guessed(monkeypatch):
    """The large-problem path on the small problems above: every size counts as large, and the subsample
    estimate of lam* is replaced by a chosen guess (returns the list of the estimate's arguments)."""
    calls = []

    def set_guess(guess):
        monkeypatch.setattr(cops_bracket, "SMALL", 0)
        monkeypatch.setattr(cops_bracket, "estimate", lambda *args: calls.append(args) or guess)
        return calls

    return set_guess


# the small-problem path: doubling / halving from lam = 1 ------------------------------------------------------------
@pytest.mark.parametrize("c,expect,evaluated", [
    (0.75, (0.5, 1.0), {0.0, 1.0, 0.5}),  # halve once from 1
    (3.0, (2.0, 4.0), {0.0, 1.0, 2.0, 4.0}),  # double twice from 1
    (2.0 ** -70, (0.0, 2.0 ** -60), {0.0} | {2.0 ** -j for j in range(61)}),  # halving stops at 2^-60, a = 0
])
def test_small_problem_bracket_doubles_or_halves_from_one(c, expect, evaluated):
    """The bracket is the pair of consecutive powers of two around lam* (a = 0 below 2^-60), found by evaluating
    g' at 0 and at the powers of two from 1 towards lam*, and nothing else."""
    a, b, known, messages, _ = bracket_of(*two(c), -0.5)
    assert (a, b) == expect and set(known) == evaluated and not messages
    assert (a == 0.0 or slope(known, a, -0.5) > 0) and slope(known, b, -0.5) <= 0


def test_small_problem_bracket_gives_up_at_2_to_the_80():
    """lam* = 2^90: doubling stops at lam = 2^80 with g' still > 0 and reports lam* as too large (b = None)."""
    a, b, known, messages, _ = bracket_of(*two(2.0 ** 90), -0.5)
    assert (a, b) == (2.0 ** 80, None) and messages == [cops_bracket.TOO_LARGE] and TOO_LARGE in messages[0]
    assert max(known) == 2.0 ** 80 and len(known) == 82  # 0 and 2^0 .. 2^80


@pytest.mark.parametrize("kap", [0.0, 0.5])  # g'(0) = 0 (exactly at the optimum) and g'(0) < 0
def test_small_problem_bracket_of_lam_star_zero(kap):
    """g'(0) <= 0: lam* = 0, the bracket is [0, 0] and only g'(0) is evaluated."""
    a, b, known, messages, _ = bracket_of(*two(0.75), kap)
    assert (a, b) == (0.0, 0.0) and set(known) == {0.0} and not messages


def test_small_problem_bracket_ends_on_a_zero_slope():
    """g'(lam) = 0 is a valid upper end (g'(b) <= 0) and stops the search: doubling stops at lam = 2 in three(1, 2);
    halving goes on past lam = 0.5 in three(0.25, 0.75) (g'(a) must be > 0)."""
    a, b, known, _, _ = bracket_of(*three(1.0, 2.0), -1.0)
    assert (a, b) == (1.0, 2.0) and slope(known, 2.0, -1.0) == 0.0 and set(known) == {0.0, 1.0, 2.0}
    a, b, known, _, _ = bracket_of(*three(0.25, 0.75), -1.0)
    assert (a, b) == (0.25, 0.5) and slope(known, 0.25, -1.0) > 0 and slope(known, 0.5, -1.0) == 0.0


def test_small_problem_bracket_reduces_the_candidates_above_4096_entries():
    """The first bracket restricts the candidates only when the problem has more than 4096 entries (below that a
    reduction costs more than it saves); the padding entries are never kept and drop out."""
    *_, cands = bracket_of(*two(0.75, pad=4094), -0.5)  # 4096 entries
    assert cands.idx is None and cands.size == 4096
    *_, cands = bracket_of(*two(0.75, pad=4095), -0.5)  # 4097 entries
    assert cands.idx is not None and cands.size == 2


def test_the_subsample_estimate_is_used_above_four_times_small(monkeypatch):
    """Problems of more than 4 * SMALL entries start from the subsample estimate of lam*; smaller ones never pay
    for it (SMALL lowered to 1024 here: the threshold is then 4096 entries)."""
    calls = []
    monkeypatch.setattr(cops_bracket, "SMALL", 1024)
    monkeypatch.setattr(cops_bracket, "estimate", lambda *args: calls.append(args) or 0.75)
    bracket_of(*two(0.75, pad=4094), -0.5)  # 4096 entries
    assert calls == []
    a, b, *_ = bracket_of(*two(0.75, pad=4095), -0.5, alpha=0.3)  # 4097 entries
    assert len(calls) == 1 and calls[0][3:] == (1, -0.5, 0.3)  # d, kappa and alpha reach the estimate
    assert (a, b) == (0.75 / 1.5, 0.75 * 1.3)


# the large-problem path: a bracket around the estimate, widened until verified --------------------------------------
@pytest.mark.parametrize("alpha,low", [(None, 2.0), (0.05, 2.0), (0.1, 2.0), (0.3, 1.5), (0.5, 1.5), (0.9, 1.3)])
def test_first_bracket_around_the_estimate(guessed, alpha, low):
    """The first bracket is [guess / low, 1.3 guess], low = 2 for alpha <= 0.1 (or kappa given), 1.5 for
    alpha <= 0.5, 1.3 above (the estimate runs high for small alpha); verified at once when it holds lam*."""
    calls = guessed(1.0)
    a, b, known, messages, cands = bracket_of(*two(1.0), -0.5, alpha=alpha)
    assert (a, b) == (1.0 / low, 1.3) and set(known) == {a, b} and not messages
    assert len(calls) == 1 and calls[0][5] == alpha and cands.interval == (a, b)


def test_a_high_estimate_widens_the_bracket_downwards(guessed):
    """lam* = 0.25, guess 4: [2, 5.2] -> [2 / 1.3^2, 2] -> [. / 1.3^4, .] -> [. / 1.3^8, .], whose lower end has
    g' > 0: the ratio squares at each step and the old lower end becomes the upper end."""
    guessed(4.0)
    a, b, known, _, _ = bracket_of(*two(0.25), -0.5)
    b_expect = 2.0 / 1.3 ** 2 / 1.3 ** 4
    assert b == pytest.approx(b_expect, rel=1e-12) and a == pytest.approx(b_expect / 1.3 ** 8, rel=1e-12)
    assert len(known) == 5 and slope(known, a, -0.5) > 0 > slope(known, b, -0.5)


def test_a_low_estimate_widens_the_bracket_upwards(guessed):
    """lam* = 1000, guess 100 (alpha 0.9): [100 / 1.3, 130] -> [130, 130 * 1.3^2] -> [., . * 1.3^4] ->
    [., . * 1.3^8], whose upper end has g' < 0."""
    guessed(100.0)
    a, b, known, messages, _ = bracket_of(*two(1000.0), -0.5, alpha=0.9)
    a_expect = 130.0 * 1.3 ** 2 * 1.3 ** 4
    assert a == pytest.approx(a_expect, rel=1e-12) and b == pytest.approx(a_expect * 1.3 ** 8, rel=1e-12)
    assert not messages and slope(known, a, -0.5) > 0 > slope(known, b, -0.5)


def test_large_problem_bracket_gives_up_at_2_to_the_80(guessed):
    """An upper end of exactly 2^80 with g' > 0 there: lam* is reported as too large at once."""
    guess = 2.0 ** 80 / 1.3
    assert guess * 1.3 == 2.0 ** 80
    guessed(guess)
    a, b, _, messages, _ = bracket_of(*two(2.0 ** 90), -0.5, alpha=0.9)
    assert (a, b) == (2.0 ** 80, None) and messages == [cops_bracket.TOO_LARGE]


@pytest.mark.parametrize("kap", [0.0, 0.5])  # g'(0) = 0 and g' < 0 everywhere
def test_large_problem_bracket_of_lam_star_zero(guessed, kap):
    """g' <= 0 at every end tried: the bracket widens down until its lower end reaches 0 (the ratio overflows),
    and [0, b] with g'(0) <= 0 is returned (lam* = 0)."""
    guessed(1.0)
    a, b, known, _, _ = bracket_of(*two(10.0), kap)
    assert a == 0.0 and 0.0 < b < 1e-100 and slope(known, 0.0, kap) <= 0


def test_large_problem_bracket_needs_a_positive_slope_at_its_lower_end(guessed):
    """three(1, 2) has g' = 0 on (1, 2]. A first lower end with g' = 0 is not a bracket: it moves down (guess 2,
    alpha 0.9: [2 / 1.3, 2.6] -> [2 / 1.3 / 1.69, 2 / 1.3]). An upper end with g' = 0 is (guess 1: [1 / 1.3, 1.3])."""
    guessed(2.0)
    a, b, known, _, _ = bracket_of(*three(1.0, 2.0), -1.0, alpha=0.9)
    assert (a, b) == (2.0 / 1.3 / 1.3 ** 2, 2.0 / 1.3) and slope(known, a, -1.0) > 0 == slope(known, b, -1.0)
    guessed(1.0)
    a, b, known, _, _ = bracket_of(*three(1.0, 2.0), -1.0, alpha=0.9)
    assert (a, b) == (1.0 / 1.3, 1.3) and slope(known, a, -1.0) > 0 == slope(known, b, -1.0) and len(known) == 2


# the solver's driver and the result it returns ----------------------------------------------------------------------
def counting_evaluations(monkeypatch):
    """Counts the calls of CandidateSet.evaluate (an independent count of the g' evaluations)."""
    count = [0]
    real = CandidateSet.evaluate

    def evaluate(self, lam):
        count[0] += 1
        return real(self, lam)

    monkeypatch.setattr(CandidateSet, "evaluate", evaluate)
    return count


def test_solve_reports_every_figure_of_a_kink(monkeypatch):
    """two(0.75), alpha 1/2: kappa_min = -1, kappa = -1/2, lam* = 0.75 where m- = {A} (S = (-0.75, 0)) and m+ = {B}
    (S = (0, -1)) meet; gamma = 1/2 gives p* = -0.375 = g(lam*). Every figure by hand."""
    count = counting_evaluations(monkeypatch)
    r = C.solve(*two(0.75), 1, alpha=0.5)
    assert r.mask.tolist() == [False, True] and (r.s0, r.s1, r.s0_minus, r.s1_minus) == (0.0, -1.0, -0.75, 0.0)
    assert (r.lam, r.lam_plus, r.d, r.kept, r.alpha, r.kappa, r.kappa_min) == (0.75, 1.0, 1, 1, 0.5, -0.5, -1.0)
    assert r.relaxed_objective == r.dual_value == -0.375 and r.swap == (1, 0)
    assert r.constraint_active is True and r.messages == [] and r.mask_plus is None and r.mask_minus is None
    assert abs(r.lam_bisection - 0.75) <= 2e-6  # the last midpoint: within 2 eps
    assert r.steps == 19 and r.candidates == 2  # [0, lam_plus = 1] halved until half its width 2^-20 <= eps
    assert r.evaluations == count[0] > 0


def test_stats_are_the_figures_a_run_logs():
    """CopsResult.stats() is what metrics.json's `cops` holds: the figures of two(0.75) above, each under its key."""
    r = C.solve(*two(0.75), 1, alpha=0.5)
    assert r.stats() == {
        "s0": 0.0, "s1": -1.0, "kappa": -0.5, "kappa_min": -1.0, "lambda": 0.75, "steps": 19, "d": 1, "kept": 1,
        "constraint_active": True, "relaxed_objective": -0.375, "lambda_plus": 1.0, "evaluations": r.evaluations,
    }
    assert isinstance(r.stats()["evaluations"], int) and r.stats()["evaluations"] > 0


def test_solve_without_refinement_reports_no_swap():
    r = C.solve(*two(0.75), 1, alpha=0.5, refine=False)
    assert r.swap is None and r.mask.tolist() == [False, True] and abs(r.lam - 0.75) <= 2e-6  # the last midpoint


def test_solve_with_a_zero_slope_at_the_bracket_end():
    """three(1, 2), kappa = -1: g'(2) = 0 at the first bracket's upper end, so lam* = 2 with m+ = m- = {B}, found
    before any bisection step (lam_bisection = lam*), after the 3 evaluations of the bracket (0, 1, 2)."""
    r = C.solve(*three(1.0, 2.0), 1, kappa=-1.0, with_masks=True)
    assert (r.lam, r.lam_bisection, r.lam_plus, r.steps, r.evaluations, r.candidates) == (2.0, 2.0, 2.0, 0, 3, 3)
    assert r.mask.tolist() == r.mask_minus.tolist() == [False, True, False] and (r.s0, r.s1) == (0.0, -1.0)
    assert r.relaxed_objective == r.dual_value == 0.0 and r.constraint_active is True and r.swap is None


def test_solve_of_a_lam_star_beyond_2_to_the_80():
    """two(2^90) scaled: A = (-1, 0), B = (0, -2^-90) with alpha 1/2 has lam* = 2^90: the solver gives the limit
    mask (control-only, {B}) after g'(0) and g'(2^0 .. 2^80) (82 evaluations), and says why."""
    s0, s1 = torch.tensor([-1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, -(2.0 ** -90)], dtype=torch.float64)
    r = C.solve(s0, s1, 1, alpha=0.5)
    assert r.mask.tolist() == [False, True] and (r.s0, r.s1) == (0.0, -(2.0 ** -90))
    assert (r.lam, r.lam_plus, r.steps, r.evaluations, r.candidates) == (math.inf, math.inf, 0, 82, 0)
    assert r.constraint_active is True and len(r.messages) == 1 and TOO_LARGE in r.messages[0]


def test_solve_with_a_zero_slope_at_lam_zero():
    """kappa = S1(m(0)) = 0: g'(0) = 0 exactly, so lam* = 0 after one evaluation (the target-only mask)."""
    r = C.solve(*two(0.75), 1, kappa=0.0)
    assert r.mask.tolist() == [True, False] and (r.lam, r.evaluations, r.constraint_active) == (0.0, 1, False)


def test_solve_with_alpha_zero_reports_the_sums_of_the_target_only_mask():
    """alpha = 0: m(0) = {A}; its sums (not those of any other lam's mask) are reported."""
    r = C.solve(*two(0.75), 1, alpha=0.0)
    assert r.mask.tolist() == [True, False] and (r.s0, r.s1, r.relaxed_objective) == (-0.75, 0.0, -0.75)


def test_solve_hands_alpha_to_the_bracket_search(guessed):
    """The subsample estimate scales the subsample's own kappa_min by alpha: solve hands alpha on."""
    calls = guessed(1.0)
    r = C.solve(*two(0.75), 1, alpha=0.9)
    assert len(calls) == 1 and calls[0][5] == 0.9 and r.lam == 0.75


def test_solve_says_when_kappa_min_is_zero():
    """No positive control importance (s1 >= 0): kappa_min = 0, said when alpha > 0 and d > 0 - not for alpha = 0
    (already unconstrained) nor for d = 0 (the empty mask)."""
    s0, s1 = torch.tensor([-0.75, 0.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    r = C.solve(s0, s1, 1, alpha=0.5)
    assert r.kappa_min == 0.0 and len(r.messages) == 1 and "kappa_min = 0" in r.messages[0]
    assert C.solve(s0, s1, 1, alpha=0.0).messages == []
    assert C.solve(s0, s1, 0, alpha=0.5).messages == []


def test_solve_rejects_eps_zero():
    with pytest.raises(ValueError, match="eps"):
        C.solve(*two(0.75), 1, alpha=0.5, eps=0.0)


def test_explicit_kappa_near_kappa_min():
    """kappa_min = -1 in two(c): kappa within 1e-12 |kappa_min| of it (either side, bounds included) is kappa_min
    (Slater fails: the limit mask, lam* = infinity); below that it is infeasible."""
    for kappa in (-1.0 - 1e-12, -1.0, -1.0 + 1e-12):
        r = C.solve(*two(0.75), 1, kappa=kappa)
        assert r.lam == math.inf and r.mask.tolist() == [False, True], kappa
    with pytest.raises(ValueError, match="kappa_min"):
        C.solve(*two(0.75), 1, kappa=-1.0 - 3e-12)
    assert C.solve(*two(0.75), 1, kappa=-1.0 + 3e-12).lam == 0.75


def test_explicit_kappa_with_kappa_min_zero():
    """kappa_min = 0 with kappa given (d = 0, or no negative control score): no Slater failure, lam* = 0."""
    r = C.solve(*two(0.75), 0, kappa=0.0)
    assert (r.lam, r.kept, r.messages) == (0.0, 0, [])
    s0, s1 = torch.tensor([-0.75, 0.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    r = C.solve(s0, s1, 1, kappa=0.5)
    assert r.mask.tolist() == [True, False] and r.lam == 0.0
