"""auto, second stage: whole training steps choose between plans.

Products timed one at a time (kernels/plan.py, `measure_products`) do not add up to a step: operands
are in cache when timed alone, a sparse forward hands the next layer a transposed input, and the
optimizer's and the mask's passes are not in them (bench_sparse.py: LeNet-300-100 at q = 0.99 ran
1.36x faster than masked dense with the measured products, 1.61x with every product sparse; at
q = 0.9 the measured plan was 0.97x). So once every layer has measured its products, the next
training steps try three plans in turn, each layer:

    measured  the products measured faster (`MIN_SPEEDUP`) and the kept-entry SGD step where the layer
              is large and sparse enough (`KEPT_UPDATE_*`)
    sparse    every product it may run sparsely and the kept-entry step at most `KEPT_UPDATE_MAX_DENSITY`
              dense (layers auto does not measure - too dense, huge im2col columns - stay dense)
    dense     masked dense training (`trainer.sparse_kernels=off`)

`ROUNDS` steps each, interleaved (the order rotates every round), timed from the trainer's
`begin_step` to `end_step` (forward, backward, mask, optimizer; not the data loading) in CPU time
with one thread (other processes do not enter it). The fastest median wins, a non-dense plan only if
at least `MIN_STEP_SPEEDUP` times faster than dense: so auto trains at masked dense speed unless a
plan measured faster in real steps. Every plan computes the same step up to float rounding, so the
trial steps are ordinary training steps.
"""
from __future__ import annotations

import statistics

PLANS = ("measured", "sparse", "dense")
ROUNDS = 9  # steps per plan: a median of 9 (bench_sparse.py: with 5, plans 10% apart swapped places)
# A non-dense plan must beat dense by 10%: on this VM two copies of the same model stepping the same plan
# differed by up to 9% in bench_sparse.py (LeNet-5 at q = 0.9, dense both), and a plan chosen at a 3% margin
# ran 0.88x in the timed steps (LeNet-5-Caffe at q = 0.99, every product sparse)
MIN_STEP_SPEEDUP = 1.10


class StepTrial:
    def __init__(self, plans: tuple[str, ...]):
        self.plans = plans  # the distinct candidates (a plan equal to another is tried once)
        self.times: dict[str, list[float]] = {p: [] for p in plans}
        self.steps = 0

    def next_plan(self) -> str:
        """The plan of the coming step: round r tries the plans in an order rotated by r."""
        n = len(self.plans)
        r, k = divmod(self.steps, n)
        return self.plans[(k + r) % n]

    def record(self, plan: str, seconds: float) -> None:
        self.times[plan].append(seconds)
        self.steps += 1

    @property
    def done(self) -> bool:
        return self.steps >= ROUNDS * len(self.plans)

    def medians(self) -> dict[str, float]:
        return {p: statistics.median(t) for p, t in self.times.items() if t}

    def choice(self) -> str:
        medians = self.medians()
        dense = medians.get("dense")
        best = min(medians, key=medians.get)
        if dense is not None and best != "dense" and medians[best] * MIN_STEP_SPEEDUP > dense:
            return "dense"
        return best
