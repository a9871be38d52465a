"""Exact kept counts for every budget and q (0 and 1 included), ties, ERK densities."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from sparse_exp.sparsity.budgets import BUDGETS, erk_counts, erk_densities, erk_ratio, uniform_counts
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.select import global_mask, kept_count, layerwise_mask, topk_mask

PARAMS = {
    "conv1.weight": torch.zeros(16, 3, 3, 3),
    "conv2.weight": torch.zeros(32, 16, 3, 3),
    "fc1.weight": torch.zeros(64, 512),
    "fc2.weight": torch.zeros(10, 64),
}
D = sum(p.numel() for p in PARAMS.values())


def test_topk_exact_with_ties_broken_by_index():
    s = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.5, 3.0])
    assert topk_mask(s, 2).tolist() == [False, True, True, False, False, False]
    assert topk_mask(s, 5).tolist() == [True, True, True, True, False, True]
    assert topk_mask(torch.zeros(7), 3).tolist() == [True] * 3 + [False] * 4
    assert topk_mask(s, 0).sum() == 0 and topk_mask(s, 6).all()
    nan = torch.tensor([float("nan"), 1.0, 2.0])
    assert topk_mask(nan, 2).tolist() == [False, True, True]
    nan = torch.tensor([-3.0, float("nan"), -1.0, 2.0])  # NaN below every score, negative ones included
    assert topk_mask(nan, 3).tolist() == [True, False, True, True]


def test_topk_rejects_impossible_counts_and_keeps_the_shape():
    s = torch.arange(6.0).reshape(2, 3)
    for k in (-1, 7):
        with pytest.raises(ValueError, match=f"cannot keep {k} of 6 entries"):
            topk_mask(s, k)
    for k in (0, 1, 5, 6):
        m = topk_mask(s, k)
        assert m.shape == (2, 3) and m.dtype == torch.bool and int(m.sum()) == k
    assert topk_mask(s, 2).tolist() == [[False, False, False], [False, True, True]]
    assert topk_mask(torch.tensor([2, 7, 5]), 1).tolist() == [False, True, False]  # integer scores
    half = torch.tensor([0.5, -1.0, 3.0, 3.0], dtype=torch.float16)
    assert topk_mask(half, 2).tolist() == [False, False, True, True]
    bf16 = torch.tensor([0.5, -1.0, 3.0, 3.0], dtype=torch.bfloat16)  # NumPy has no bfloat16: read as float64
    assert topk_mask(bf16, 3).tolist() == [True, False, True, True]


def test_topk_large_vector_exact_count():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 50, (2_000_003,), generator=g).float()  # many ties
    for k in (0, 1, 12_345, 1_000_000, 2_000_003):
        assert int(topk_mask(s, k).sum()) == k


# Layer sizes of the papers' networks and some where (1 - q) D is a whole number for every q below:
# LeNet-5-Caffe 430,500 and LeNet-300-100 266,200 (Tables A.1/A.2), VGG-16 15,239,872, ResNet50 25,502,912.
SIZES = [500, 430_500, 266_200, 15_239_872, 25_502_912, 1_234_567, 2**31 - 1]
RATES = ["0", "0.1", "0.2", "0.3", "0.36", "0.5", "0.6", "0.7", "0.8", "0.85", "0.9", "0.95", "0.977", "0.98", "0.99",
         "0.995", "0.999", "1"]


@pytest.mark.parametrize("n", SIZES)
def test_kept_count_is_the_exact_floor(n):
    """floor((1 - q) D) in exact rational arithmetic (Algorithm 3.1, eq. A.39): a float product that lands
    just below a whole number (e.g. (1 - 0.8) * 430,500 = 86,099.99999999999) must not lose a weight."""
    for q in RATES:
        assert kept_count(float(q), n) == math.floor((1 - Fraction(q)) * n), (q, n)
    assert kept_count(0.8, 430_500) == 86_100 and kept_count(0.8, 500) == 100 and kept_count(0.99, 430_500) == 4_305


@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.99, 0.999, 1.0])
def test_kept_count_for_every_budget(q):
    k = kept_count(q, D)
    assert k == math.floor((1 - Fraction(str(q))) * D)
    scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(i)) for i, (n, p) in enumerate(PARAMS.items())}
    assert global_mask(scores, k).kept() == k
    for budget in ("uniform", "erk"):
        counts = BUDGETS.get(budget)(PARAMS, k)
        assert sum(counts.values()) == k
        assert all(0 <= counts[n] <= p.numel() for n, p in PARAMS.items())
        mask = layerwise_mask(scores, counts)
        assert mask.kept() == k and all(int(mask.masks[n].sum()) == counts[n] for n in PARAMS)


def test_uniform_counts_per_layer():
    counts = uniform_counts(PARAMS, D // 10)
    for n, p in PARAMS.items():
        assert abs(counts[n] - p.numel() / 10) < 1


def test_erk_densities_formula_and_eps():
    density = 0.1
    dens, eps = erk_densities(PARAMS, density)
    # eq. A.76 written out by hand for the conv layers, RigL's (n_in + n_out)/(n_in n_out) for linear ones
    assert dens["conv2.weight"] == pytest.approx(eps * (32 + 16 + 2 * 3) / (32 * 16 * 9))
    assert dens["fc1.weight"] == pytest.approx(eps * (64 + 512) / (64 * 512))
    assert erk_ratio((32, 16, 3, 3)) == pytest.approx(54 / 4608)
    kept = sum(min(1.0, dens[n]) * p.numel() for n, p in PARAMS.items())
    assert kept == pytest.approx(density * D)
    assert dens["conv1.weight"] == pytest.approx(eps * (16 + 3 + 6) / (16 * 3 * 9))
    # at a higher density the small first layer would exceed 1: it stays dense and eps is re-solved
    dens, eps = erk_densities(PARAMS, 0.6)
    assert dens["conv1.weight"] == 1.0 and eps * erk_ratio((16, 3, 3, 3)) > 1
    assert sum(min(1.0, dens[n]) * p.numel() for n, p in PARAMS.items()) == pytest.approx(0.6 * D)


def test_erk_counts_with_dense_layers():
    k = D // 20
    counts = erk_counts(PARAMS, k, dense=["fc2.weight"])
    assert counts["fc2.weight"] == 640 and sum(counts.values()) == k


def test_mask_object():
    params = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    m = Mask.from_flat(torch.tensor([1, 0, 1, 0, 0, 1, 1, 1, 0, 0], dtype=torch.bool), params)
    assert m.kept() == 5 and m.numel() == 10 and m.density() == 0.5
    assert m.layer_densities() == {"a": 0.5, "b": 0.5}
    assert m.sha256() == Mask.from_flat(m.flat(), params).sha256()
    other = Mask.from_flat(torch.tensor([1, 1, 0, 0, 0, 1, 1, 1, 0, 0], dtype=torch.bool), params)
    assert m.sha256() != other.sha256()
    assert m.similarity(other) == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="shape"):
        m.check({"a": torch.zeros(3, 2), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match="binary"):
        Mask({"a": torch.tensor([0.0, 0.5])})
    assert Mask({"a": torch.zeros(3, dtype=torch.bool)}).empty_layers() == ["a"]


def test_mask_save_load_roundtrip(tmp_path):
    params = {"w": torch.zeros(3, 5, 7), "v": torch.zeros(11)}
    m = Mask.from_flat(torch.rand(116, generator=torch.Generator().manual_seed(3)) > 0.5, params)
    m.save(tmp_path / "m.npz")
    back = Mask.load(tmp_path / "m.npz")
    assert back.equal(m) and back.sha256() == m.sha256()


def _reference_rounds(scores_per_round, drops):
    """Brute force: keep the top (live - n) live scores, ties to the lower index, round by round."""
    alive = torch.ones(scores_per_round[0].numel(), dtype=torch.bool)
    for scores, n in zip(scores_per_round, drops):
        live_idx = alive.nonzero().reshape(-1)
        keep = topk_mask(scores[live_idx], live_idx.numel() - n)
        alive[live_idx[~keep]] = False
    return alive


@pytest.mark.parametrize("size", [1000, 300_000])
def test_survivors_match_brute_force_with_ties(size):
    from sparse_exp.sparsity.scores.survivors import Survivors

    g = torch.Generator().manual_seed(size)
    rounds = [torch.randint(0, 40, (size,), generator=g).float() for _ in range(6)]  # heavy ties
    drops, live = [], size
    for frac in (0.1, 0.3, 0.5, 0.6, 0.7, 0.9):  # dense phase first, then the index list
        n = int(live * frac)
        drops.append(n)
        live -= n
    s = Survivors(size)
    for scores, n in zip(rounds, drops):
        dropped = s.drop(scores.numpy(), n)
        assert dropped.size == n and np.all(np.diff(dropped) > 0)
    assert torch.equal(torch.from_numpy(s.alive), _reference_rounds(rounds, drops))


def test_survivors_fall_back_when_the_sample_misleads():
    from sparse_exp.sparsity.scores import survivors as sv

    size = 1 << 20
    scores = np.full(size, 5.0, dtype=np.float32)
    scores[np.arange(0, size, size // sv.SAMPLE)] = 0.0  # the sample sees only the lowest scores
    scores[: size // 2] += np.linspace(0, 1, size // 2, dtype=np.float32)
    s = sv.Survivors(size)
    assert s._drop_dense(scores, 200_000) is None  # the bound is too low: the exact path is taken
    dropped = s.drop(scores, 200_000)
    ref = _reference_rounds([torch.from_numpy(scores)], [200_000])
    assert dropped.size == 200_000 and torch.equal(torch.from_numpy(s.alive), ref)


def test_survivors_edge_counts():
    """Survivors.drop(scores, n) at the edges: n = 0 drops nothing (an empty int64 index array), n = 1 the single
    lowest live score (a tie goes to the higher index), n >= the live count every live entry."""
    from sparse_exp.sparsity.scores.survivors import Survivors

    scores = np.array([3.0, 1.0, 2.0, 1.0, 5.0])
    s = Survivors(5)
    none = s.drop(scores, 0)
    assert none.dtype == np.int64 and none.size == 0 and s.count == 5 and s.alive.all()
    assert s.drop(scores, 1).tolist() == [3] and s.alive.tolist() == [True, True, True, False, True]
    assert s.drop(scores, 2).tolist() == [1, 2] and s.count == 2
    assert s.drop(scores, 5).tolist() == [0, 4] and s.count == 0 and not s.alive.any()
    s = Survivors(5)  # n equal to the live count: in the dense phase, and at 20% alive
    assert s.drop(scores, 5).tolist() == [0, 1, 2, 3, 4] and s.count == 0
    s = Survivors(5)
    s.drop(scores, 4)
    assert s.drop(scores, 1).tolist() == [4] and s.count == 0  # the last one, from the index list


def _lowest_live(scores: np.ndarray, alive: np.ndarray, n: int) -> list[int]:
    """The n live entries Survivors.drop removes, by sorting: lowest score first, a tie to the higher index."""
    live = [i for i in range(len(scores)) if alive[i]]
    return sorted(sorted(live, key=lambda i: (scores[i], -i))[:n])


def test_survivors_dense_phase_ranks_a_few_candidates_then_switches_to_the_index_list(monkeypatch):
    """SynFlow's rounds on millions of weights rank only the entries below a sampled bound while more than 20% are
    alive (the dense phase), then keep the live entries as an index list. 5 x 2^16 entries, 65,536 sampled: the
    bound sits ~5 standard deviations of the sample quantile above the n-th score, so the exact selection sees
    about 6% more entries than it drops (below 1.2 n); at exactly 20% alive the index list takes over."""
    from sparse_exp.sparsity.scores import survivors as sv

    size = 5 << 16
    scores = np.random.default_rng(0).permutation(size).astype(np.float64)  # distinct scores
    ranked = []
    lowest = sv._lowest
    monkeypatch.setattr(sv, "_lowest", lambda s, positions, n: ranked.append(positions.size) or lowest(s, positions, n))
    s = sv.Survivors(size)
    for n, live_after in ((size // 10, 9 * size // 10), (size * 7 // 10, size // 5)):  # dense, dense
        expected = np.arange(size - s.count, size - s.count + n)  # the scores are a permutation: drop by rank
        dropped = s.drop(scores, n)
        assert np.array_equal(np.sort(scores[dropped]), expected.astype(np.float64)) and s.count == live_after
        assert n < ranked[-1] < 1.2 * n and s._live is None
    dropped = s.drop(scores, 1000)  # 20% alive, not more: the index list
    assert s._live is not None and s._live.size == s.count == size // 5 - 1000
    assert ranked[-1] == size // 5 and np.array_equal(np.sort(scores[dropped]), np.arange(size * 4 // 5, size * 4 // 5 + 1000))


def test_survivors_sampled_bound_at_its_limits(monkeypatch):
    """The two edges of the sampled bound, where the exact selection must take over. 100 entries (all sampled),
    n = 68: the bound's rank is ceil(68 + 50 sqrt(0.68 x 0.32) + 8) = 100 = the sample size. 1,000 entries with
    SAMPLE = 100 (every 10th sampled; sampled entry 10 j scores j, the others 1000), n = 18: the bound's rank is
    ceil(1.8 + 500 sqrt(0.018 x 0.982 / 100) + 8) = 17, so exactly 18 entries lie at or below it - no more than n."""
    from sparse_exp.sparsity.scores import survivors as sv

    scores = np.random.default_rng(1).permutation(100).astype(np.float64)
    s = sv.Survivors(100)
    assert s.drop(scores, 68).tolist() == _lowest_live(scores, np.ones(100, bool), 68)

    monkeypatch.setattr(sv, "SAMPLE", 100)
    scores = np.full(1000, 1000.0)
    scores[::10] = np.arange(100)
    s = sv.Survivors(1000)
    assert s._drop_dense(scores, 18) is None
    assert s.drop(scores, 18).tolist() == list(range(0, 180, 10))
