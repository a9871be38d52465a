"""LambdaSearch (cops/bisection.py): the bisection on the dual variable lambda, its secant narrowing and the kink
handling, each step on problems small enough to follow by hand.

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs.

The search only sees the candidate set through `evaluate(lam) -> (S0(m_lam), S1(m_lam))`, `size`, `interval`
and `reduce(a, b)`. `Dual` stands in for it with a dual function written down by hand: g'(lam) = S1(m_lam) -
kappa is a step function given by its values and the lams where it jumps, i.e. g is the minimum of one line
per piece (the dual of a problem with that many masks). Every probe the search makes is recorded, so a test
can pin the work done as well as the answer."""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import pytest

from sparse_exp.sparsity.cops import bisection
from sparse_exp.sparsity.cops.bisection import LambdaSearch
from sparse_exp.sparsity.cops.bracket import LAM_MIN_EXP

LARGE = bisection.SMALL + 1  # a candidate set large enough for the secant narrowing


class Dual:
    """g'(lam) = slopes[i] for lam between kinks[i - 1] and kinks[i]: the masks are lines S0 + lam S1 with
    S1 = kappa + slopes[i], their S0 chosen so that neighbours meet at the kinks (g is continuous; the first
    S0 is 0). evaluate picks the piece by comparing lam with the kinks (exact, whatever the rounding of the
    lines); at a kink it returns the piece on the left (`prefer="left"`) or on the right."""

    def __init__(self, slopes, kinks, kappa=0.0, scale=1.0, size=100, interval=(0.0, math.inf), prefer="left"):
        assert len(slopes) == len(kinks) + 1 and list(kinks) == sorted(kinks)
        s0 = [0.0]
        for k, lam in enumerate(kinks):  # continuity at lam: s0[k] + lam slopes[k] = s0[k + 1] + lam slopes[k + 1]
            s0.append(s0[k] + lam * (slopes[k] - slopes[k + 1]))
        self.lines = [(scale * a, scale * (kappa + g)) for a, g in zip(s0, slopes)]
        self.kinks, self.prefer = list(kinks), prefer
        self.kappa = scale * kappa
        self.size, self.interval = size, interval
        self.probes, self.reductions = [], []

    def evaluate(self, lam):
        a, b = self.interval
        assert a <= lam <= b, (lam, self.interval)
        self.probes.append(lam)
        piece = (bisect_left if self.prefer == "left" else bisect_right)(self.kinks, lam)
        return self.lines[piece]

    def reduce(self, a, b):
        self.reductions.append((a, b))
        self.interval = (a, b)

    def line(self, k):
        return self.lines[k]


def search_on(dual: Dual, a: float, b: float) -> LambdaSearch:
    """A search started on the bracket [a, b] (both ends evaluated, as find_bracket leaves them)."""
    known = {lam: dual.evaluate(lam) for lam in (a, b)}
    dual.probes.clear()
    return LambdaSearch(dual, known, dual.kappa, a, b)


def counted(search: LambdaSearch, limit: int):
    """Make search.sign_at fail after `limit` calls (a loop that stops making progress fails fast)."""
    real, calls = search.sign_at, []

    def sign_at(lam):
        calls.append(lam)
        assert len(calls) <= limit, "the search does not stop"
        return real(lam)

    search.sign_at = sign_at
    return calls


# sign_at: deduced outside (pos, neg), evaluated inside -----------------------------------------------
def test_signs_at_and_beyond_the_bracket_ends_are_deduced_without_an_evaluation():
    dual = Dual([2.0, -4.0], [2.5])
    search = search_on(dual, 1.0, 4.0)
    assert search.sign_at(1.0) > 0 and search.sign_at(0.5) > 0 and search.sign_at(4.0) < 0 and search.sign_at(9.0) < 0
    assert dual.probes == []
    assert search.sign_at(2.0) > 0 and search.sign_at(3.0) < 0 and dual.probes == [2.0, 3.0]
    assert (search.pos, search.neg) == (2.0, 3.0)


def test_a_zero_slope_leaves_the_strict_bracket_alone():
    """pos and neg keep g'(pos) > 0 > g'(neg): a point with g' = 0 is returned as 0, not made an end."""
    dual = Dual([2.0, 0.0, -4.0], [1.5, 2.5])
    search = search_on(dual, 1.0, 4.0)
    assert search.sign_at(2.0) == 0.0 and (search.pos, search.neg) == (1.0, 4.0)
    assert search.slope(search.pos) > 0 > search.slope(search.neg)


# narrow: two regula-falsi probes, each followed by one 3% across --------------------------------------
def test_narrowing_hits_a_flat_piece_with_its_first_regula_falsi_probe():
    # g'(1) = 2, g'(4) = -4: the secant through (1, 2) and (4, -4) is zero at 1 + 3 * 2 / 6 = 2, where g' = 0
    dual = Dual([2.0, 0.0, -4.0], [1.5, 2.5], size=LARGE)
    search = search_on(dual, 1.0, 4.0)
    search.narrow()
    assert search.exact == 2.0 and dual.probes == [2.0] and dual.reductions == []


def test_narrowing_looks_3_percent_below_a_negative_probe():
    # secant zero at 2, where g' = -4 < 0; 0.97 * 2 = 1.94 lies on the flat piece [1.9, 1.95]
    dual = Dual([2.0, 0.0, -4.0], [1.9, 1.95], size=LARGE)
    search = search_on(dual, 1.0, 4.0)
    search.narrow()
    assert dual.probes == [2.0, 0.97 * 2.0] and search.exact == 0.97 * 2.0


def test_narrowing_looks_3_percent_above_a_positive_probe():
    # g'(1) = 0.5, g'(4) = -1: secant zero at 1 + 3 * 0.5 / 1.5 = 2, where g' = 0.5 > 0; 1.03 * 2 = 2.06 is flat
    dual = Dual([0.5, 0.0, -1.0], [2.04, 2.08], size=LARGE)
    search = search_on(dual, 1.0, 4.0)
    search.narrow()
    assert dual.probes == [2.0, 1.03 * 2.0] and search.exact == 1.03 * 2.0


@pytest.mark.parametrize("slopes,flat,expected", [
    ((2.0 ** -10, -4.0), (1.02, 1.04), 1.0 + 0.01 * 3.0),  # secant zero at 1.0007: moved up to pos + 1% of the width
    ((4.0, -2.0 ** -10), (3.96, 3.98), 4.0 - 0.01 * 3.0),  # secant zero at 3.9993: moved down to neg - 1%
])
def test_a_regula_falsi_probe_stays_one_percent_inside_the_bracket(slopes, flat, expected):
    dual = Dual([slopes[0], 0.0, slopes[1]], list(flat), size=LARGE)
    search = search_on(dual, 1.0, 4.0)
    search.narrow()
    assert dual.probes == [expected] and search.exact == expected


def test_narrowing_makes_two_rounds_and_shrinks_the_candidates_after_each():
    # g' = 1 up to 3.5, -1 beyond: every probe is positive (secant zero at the middle of the bracket)
    dual = Dual([1.0, -1.0], [3.5], size=LARGE)
    search = search_on(dual, 1.0, 4.0)
    search.narrow()
    x1 = 2.5
    y1 = 1.03 * x1
    x2 = y1 + (4.0 - y1) / 2
    y2 = 1.03 * x2
    assert dual.probes == pytest.approx([x1, y1, x2, y2], rel=1e-15)
    assert dual.reductions == [(y1, 4.0), (search.pos, 4.0)] and search.pos == y2 and search.exact is None


@pytest.mark.parametrize("size,a,b,kinks,why", [
    (bisection.SMALL, 1.0, 4.0, [1.5, 2.0], "a candidate set of SMALL entries is evaluated directly"),
    (10, 1.0, 4.0, [1.5, 2.0], "a small candidate set is evaluated directly"),
    (LARGE, 98.0, 100.0, [99.0, 99.5], "a bracket at most 2% of its upper end wide is narrow enough"),
    (LARGE, 1.0, 1.75, [1.5, 2.0], "g'(b) = 0: lam* = b is known"),
])
def test_narrowing_is_skipped(size, a, b, kinks, why):
    dual = Dual([2.0, 0.0, -4.0], kinks, size=size)
    search = search_on(dual, a, b)
    search.narrow()
    assert dual.probes == [] and dual.reductions == [], why


# find_lam_plus: the smallest power of two with g' <= 0 -------------------------------------------------
def test_lam_plus_is_the_smallest_power_of_two_with_a_non_positive_slope():
    # lam* = 7 in the bracket [0.5, 10]: 8 has g' < 0, 4 has g' > 0
    dual = Dual([1.0, -1.0], [7.0])
    search = search_on(dual, 0.5, 10.0)
    search.find_lam_plus(10.0)
    assert search.lam_plus == 8.0 and dual.probes == [8.0, 4.0] and search.exact is None


def test_lam_plus_on_a_flat_piece_is_lam_star():
    dual = Dual([1.0, 0.0, -1.0], [3.5, 4.5])
    search = search_on(dual, 0.5, 10.0)
    search.find_lam_plus(10.0)
    assert search.exact == 4.0 and search.lam_plus == 4.0 and dual.probes == [8.0, 4.0]


def test_lam_plus_is_never_below_the_search_range():
    """lam* below 2^-60 (bracket [0, 2^-60]): lam_plus = 2^-60 without an evaluation."""
    low = 2.0 ** LAM_MIN_EXP
    dual = Dual([1.0, -1.0], [low / 1024])
    search = search_on(dual, 0.0, low)
    search.find_lam_plus(low)
    assert search.lam_plus == low and dual.probes == []


# bisect: Algorithm 4.1's steps on [0, lam_plus] -------------------------------------------------------
def test_bisection_halves_until_half_the_bracket_is_within_eps():
    """On [0, 1] with eps = 2^-10 the loop stops once half the bracket is <= eps: after 9 halvings. Without
    find_lam_plus, lam_plus is the bracket's upper end b. The first midpoint 0.5 = a has a known sign."""
    dual = Dual([1.0, -1.0], [0.7])
    search = search_on(dual, 0.5, 1.0)
    search.bisect(2.0 ** -10)
    assert search.lam_plus == 1.0 and search.steps == 9 and len(dual.probes) == 8
    assert search.pos < 0.7 < search.neg and search.neg - search.pos == 2.0 ** -9
    assert search.lam_b in (search.pos, search.neg)


def test_bisection_makes_one_step_even_when_the_bracket_is_within_eps():
    """Algorithm 4.1 is a repeat ... until loop: one midpoint at least."""
    dual = Dual([1.0, -1.0], [0.7])
    search = search_on(dual, 0.5, 1.0)
    search.bisect(1.0)
    assert search.steps == 1 and search.lam_b == 0.5


@pytest.mark.parametrize("lam_star", [0.7, 0.3, 1 / 3, 0.123456789])
def test_bisection_stops_at_the_float_resolution_of_lam(lam_star):
    """eps below the spacing of floats near lam*: the loop ends when the midpoint is no longer strictly between
    the ends (a float step apart), after about 53 steps, not spinning on the same midpoint."""
    dual = Dual([1.0, -1.0], [lam_star])
    search = search_on(dual, 0.0, 1.0)
    counted(search, 200)
    search.bisect(1e-300)
    assert search.pos <= lam_star < search.neg and search.neg == math.nextafter(search.pos, 2.0)
    assert 50 <= search.steps <= 60


def test_a_midpoint_on_a_flat_piece_ends_the_bisection():
    """g' = 0 on [0.7, 0.8]: the second midpoint 0.75 is lam* (the bracket stays as it was; a loop that kept the
    midpoint unresolved would evaluate it again and again)."""
    dual = Dual([1.0, 0.0, -1.0], [0.7, 0.8])
    search = search_on(dual, 0.5, 1.0)
    counted(search, 50)
    search.bisect(1e-6)
    assert search.exact == 0.75 and search.steps == 2 and search.lam_b == 0.75 and dual.probes == [0.75]
    assert (search.pos, search.neg) == (0.5, 1.0)


def test_bisection_shrinks_a_large_candidate_set_whenever_the_bracket_is_a_quarter_of_the_last():
    """More than 4096 candidates. pos/neg after each of the 6 midpoints (lam* = 2.7 on [0, 4], candidates
    restricted to [0, 4]): (2, 4); (2, 3), a quarter of [0, 4] -> reduce to it; (2.5, 3); (2.5, 2.75), a quarter of
    [2, 3] -> reduce; (2.625, 2.75); (2.6875, 2.75), a quarter of [2.5, 2.75] -> reduce."""
    dual = Dual([1.0, -1.0], [2.7], size=4097, interval=(0.0, 4.0))
    search = search_on(dual, 1.0, 4.0)
    search.bisect(2.0 ** -5)
    assert search.steps == 6
    assert dual.reductions == [(2.0, 3.0), (2.5, 2.75), (2.6875, 2.75)]


def test_bisection_leaves_a_small_candidate_set_alone():
    dual = Dual([1.0, -1.0], [2.7], size=4096, interval=(0.0, 4.0))
    search = search_on(dual, 1.0, 4.0)
    search.bisect(2.0 ** -5)
    assert search.steps == 6 and dual.reductions == []


def test_a_zero_slope_at_the_bracket_end_needs_no_search():
    """g'(b) = 0: b is lam*; no narrowing, no lam_plus search, no bisection step and no midpoint (the solver
    reports lam_b = lam* then)."""
    dual = Dual([1.0, 0.0, -1.0], [1.5, 2.5], size=LARGE)
    search = search_on(dual, 1.0, 2.0)
    search.narrow()
    search.find_lam_plus(2.0)
    search.bisect(1e-6)
    assert search.exact == 2.0 and search.steps == 0 and search.lam_b == 0.0 and dual.probes == []


# kink: cutting planes from the ends of the final bracket to the kink lam* ------------------------------
KAP = -0.25  # nonzero, so that the sign of g' = S1 - kappa depends on subtracting it


def test_kink_of_two_pieces_is_where_their_lines_meet():
    """g' = 2 up to 2.5, -4 beyond: the lines at L = 1 and R = 4 meet at 2.5, which is lam*: one evaluation
    confirms it and the bracket ends are returned as they are."""
    dual = Dual([2.0, -4.0], [2.5], kappa=KAP)
    search = search_on(dual, 1.0, 4.0)
    assert search.kink(True) == ((1.0, dual.line(0)), (4.0, dual.line(1)), 2.5)
    assert dual.probes == [2.5] and search.exact is None


@pytest.mark.parametrize("scale", [1.0, 2.0 ** -40, 2.0 ** 40])
def test_kink_moves_the_left_end_onto_a_piece_with_positive_slope(scale):
    """g' = 2, 0.5, -4 with kinks 1.5 and 3 (lines 2 lam, 2.25 + 0.5 lam, 15.75 - 4 lam, kappa aside): the lines
    at 1 and 4 meet at 15.75 / 6 = 2.625 (on the middle piece, g' > 0), which becomes L; the middle line and the
    right one meet at 3 = lam*. The same with every score scaled by 2^-40 or 2^40 (the tolerance scales with them)."""
    dual = Dual([2.0, 0.5, -4.0], [1.5, 3.0], kappa=KAP, scale=scale)
    search = search_on(dual, 1.0, 4.0)
    (L, sL), (R, sR), lam = search.kink(True)
    assert (L, sL, R, sR, lam) == (2.625, dual.line(1), 4.0, dual.line(2), 3.0)
    assert dual.probes == [2.625, 3.0] and search.exact is None


def test_kink_moves_the_right_end_onto_a_piece_with_negative_slope():
    """g' = 2, -0.5, -4 with kinks 1.5 and 3 (lines 2 lam, 3.75 - 0.5 lam, 14.25 - 4 lam): the lines at 1 and 4
    meet at 14.25 / 6 = 2.375 (g' < 0 there), which becomes R; the left line and the middle one meet at 1.5 = lam*."""
    dual = Dual([2.0, -0.5, -4.0], [1.5, 3.0], kappa=KAP)
    search = search_on(dual, 1.0, 4.0)
    (L, sL), (R, sR), lam = search.kink(True)
    assert ((L, sL), (R, sR), lam) == ((1.0, dual.line(0)), (2.375, dual.line(1)), 1.5)
    assert dual.probes == [2.375, 1.5] and search.exact is None


def test_kink_that_lands_on_a_flat_piece_is_exact():
    """g' = 2, 0, -4 with kinks 1.5 and 3: the lines at 1 and 4 meet at 2.5 on the flat piece: lam* = 2.5 with
    g'(2.5) = 0 (recorded with its scores)."""
    dual = Dual([2.0, 0.0, -4.0], [1.5, 3.0], kappa=KAP)
    search = search_on(dual, 1.0, 4.0)
    out = search.kink(True)
    assert out == ((1.0, dual.line(0)), (4.0, dual.line(2)), 2.5)
    assert search.exact == 2.5 and search.known[2.5] == dual.line(1) and dual.probes == [2.5]


@pytest.mark.parametrize("prefer,a,b", [("left", 1.5, 4.0), ("right", 1.0, 1.5)])
def test_kink_at_a_bracket_end_needs_no_evaluation(prefer, a, b):
    """The bisection evaluated lam* itself and the tie went to one side's piece: the lines at the ends meet at
    that end, which is lam*."""
    dual = Dual([2.0, -4.0], [1.5], kappa=KAP, prefer=prefer)
    search = search_on(dual, a, b)
    (L, _), (R, _), lam = search.kink(True)
    assert (L, R, lam) == (a, b, 1.5) and dual.probes == []


def test_kink_without_refinement_returns_the_bracket_and_the_last_midpoint():
    dual = Dual([2.0, 0.5, -4.0], [1.5, 3.0], kappa=KAP)
    search = search_on(dual, 1.0, 4.0)
    search.lam_b = 2.0
    assert search.kink(False) == ((1.0, dual.line(0)), (4.0, dual.line(2)), 2.0) and dual.probes == []
