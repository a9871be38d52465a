"""Score registry: the importance of every prunable entry (higher = kept), one function per criterion.

    random     |z|, z ~ N(0, 1)                 (eq. 4.2)
    magnitude  |θ|                              (eq. 2.41)
    snip       |dL/dθ ⊙ θ|                      (eq. 3.1)
    usnip      SNIP with random labels          (section 4.4.3)
    grasp      θ ⊙ Hg                           (eq. 2.46, appendix F.6)
    synflow    θ ⊙ dR/dθ, one shot              (eq. 2.47; the iterative method lives in synflow.py)

Scores are computed on the run's device, only over prunable parameters, without changing the
model (BatchNorm statistics, modes and .grad are restored).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from sparse_exp.registry import Registry
from sparse_exp.seeding import generator
from sparse_exp.sparsity.scores import gradient, simple, synflow as _synflow
from sparse_exp.sparsity.scores.config import ScoringConfig
from sparse_exp.sparsity.scores.context import ScoreContext

ScoreFn = Callable[[ScoreContext], dict[str, torch.Tensor]]
SCORES: Registry[ScoreFn] = Registry("score")
SCORES.register("random")(simple.random)
SCORES.register("magnitude")(simple.magnitude)
SCORES.register("snip")(gradient.snip)
SCORES.register("usnip")(gradient.usnip)
SCORES.register("grasp")(gradient.grasp)
SCORES.register("synflow")(_synflow.synflow)

DATA_FREE = {"random", "magnitude", "synflow"}


def resolve_classes(spec, num_classes: int) -> Optional[list[int]]:
    """score_classes: None (all), an int #T (that many classes, drawn once with a fixed generator so
    every seed and method sees the same ones, Fig. 4.8), or an explicit list."""
    if spec is None:
        return None
    if isinstance(spec, int):
        perm = torch.randperm(num_classes, generator=generator(0, "score_classes", num_classes, spec))
        return sorted(perm[:spec].tolist())
    return sorted(int(c) for c in spec)


def score_context(session, scfg, stream: str = "score", mask=None) -> ScoreContext:
    classes = resolve_classes(getattr(scfg, "score_classes", None), session.data.num_classes)
    cache: dict = {}

    def batches():
        if "b" not in cache:
            cache["b"] = session.score_batches(
                scfg.score_batches, classes, getattr(scfg, "score_batch_size", None), stream=stream
            )
        return cache["b"]

    return ScoreContext(
        model=session.model,
        params=session.params,
        batches=batches,
        num_classes=session.data.num_classes,
        input_shape=tuple(session.data.input_shape),
        cfg=scfg,
        generator=generator(session.cfg.seed, "method", stream),
        mask=mask,
    )


def compute_scores(session, name: str, scfg, mask=None) -> dict[str, torch.Tensor]:
    """Importance of every prunable entry of `session.model` under criterion `name`."""
    fn = SCORES.get(name)
    ctx = score_context(session, scfg, stream="score", mask=mask)
    scores = fn(ctx)
    return {n: s.detach().float() for n, s in scores.items()}


__all__ = ["SCORES", "ScoringConfig", "ScoreContext", "compute_scores", "resolve_classes", "score_context"]
