"""Which live entries an iterative pruning round removes: the n smallest scores among the entries
still alive, ties going to the higher flat index, so the kept set is "top-k, ties to the lower
index" as everywhere else (sparsity/select.py).

Two exact ways, whichever is cheaper at the current density (SynFlow's 100 rounds on VGG-16 rank
15.3M entries in the first rounds and far fewer in the last):

* dense phase: estimate the threshold from a fixed strided sample of the scores, take the live
  entries at or below a safe upper bound with one vectorised pass over the score buffer, and select
  exactly among those few; if the bound turns out too low, fall back to the sparse way;
* sparse phase: gather the live scores by index and partition them.
"""
from __future__ import annotations

import math

import numpy as np

SAMPLE = 1 << 16  # entries in the threshold sample
DENSE_UNTIL = 0.2  # below this live fraction, keep the live entries as an index list


class Survivors:
    def __init__(self, size: int):
        self.size = size
        self.alive = np.ones(size, dtype=bool)
        self.count = size
        self._live: np.ndarray | None = None  # sorted flat indices, once the sparse phase starts
        self._sample = np.arange(0, size, max(1, size // SAMPLE))

    def indices(self) -> np.ndarray:
        """Sorted flat indices of the live entries."""
        return self._live if self._live is not None else np.flatnonzero(self.alive)

    def drop(self, scores: np.ndarray, n: int) -> np.ndarray:
        """Remove the n lowest-scoring live entries; returns their sorted flat indices."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        if n >= self.count:
            dropped = self.indices()
        elif self._live is None and self.count > DENSE_UNTIL * self.size:
            dropped = self._drop_dense(scores, n)
            if dropped is None:
                dropped = _lowest(scores, np.flatnonzero(self.alive), n)
        else:
            if self._live is None:
                self._live = np.flatnonzero(self.alive)
            dropped = _lowest(scores, self._live, n)
        self.alive[dropped] = False
        self.count -= dropped.size
        if self._live is not None:
            self._live = self._live[self.alive[self._live]]
        return dropped

    def _drop_dense(self, scores: np.ndarray, n: int) -> np.ndarray | None:
        sample = self._sample[self.alive[self._sample]]
        values = scores[sample]
        m = values.size
        frac = n / self.count
        # an upper bound for the n-th smallest live score: a few standard deviations above the
        # sample quantile, so that the bound holds unless the sample is badly unrepresentative
        pos = math.ceil(m * (frac + 5.0 * math.sqrt(frac * (1 - frac) / max(m, 1))) + 8)
        if m == 0 or pos >= m:
            return None
        bound = np.partition(values, pos)[pos]
        candidates = np.flatnonzero((scores <= bound) & self.alive)
        if candidates.size <= n:  # the bound is below the true threshold: not enough candidates
            return None
        return _lowest(scores, candidates, n)


def _lowest(scores: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """The n entries of `positions` (sorted flat indices, a superset of every live entry whose score
    is at most the n-th smallest) with the smallest scores; ties: the higher index goes."""
    values = np.take(scores, positions)
    threshold = np.partition(values, n)[n]  # the smallest score that survives
    below = values < threshold
    ties_to_drop = n - int(np.count_nonzero(below))
    dropped = positions[below]
    if ties_to_drop > 0:
        ties = positions[values == threshold]
        dropped = np.sort(np.concatenate([dropped, ties[ties.size - ties_to_drop :]]))
    return dropped
