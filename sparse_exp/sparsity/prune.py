"""From a criterion and a compression rate to a mask: the step every pruning/freezing method shares."""
from __future__ import annotations

from sparse_exp.errors import ConfigError
from sparse_exp.sparsity.budgets import BUDGETS
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.scores import SCORES, compute_scores, score_context
from sparse_exp.sparsity.scores.synflow import synflow_iterative
from sparse_exp.sparsity.select import global_mask, kept_count, layerwise_mask

BUDGET_NAMES = ("global", "uniform", "erk")


def validate_scoring(cfg, key: str, criterion: str) -> None:
    """ConfigError for an unknown criterion, budget or scoring setting."""
    if criterion not in SCORES:
        raise ConfigError(f"{key}: unknown score '{criterion}'; choose one of: {', '.join(SCORES.names())}")
    if cfg.budget not in BUDGET_NAMES:
        raise ConfigError(f"method.budget must be one of {', '.join(BUDGET_NAMES)}; got '{cfg.budget}'")
    if criterion == "synflow" and cfg.budget != "global":
        raise ConfigError("method.budget: iterative SynFlow prunes globally (appendix G.4); use method.budget=global")
    if cfg.score_batches < 1:
        raise ConfigError(f"method.score_batches must be >= 1; got {cfg.score_batches}")
    if cfg.score_bn_mode not in ("train", "eval"):
        raise ConfigError(f"method.score_bn_mode must be train or eval; got '{cfg.score_bn_mode}'")
    if cfg.synflow_dtype not in ("auto", "float32", "float64"):
        raise ConfigError(f"method.synflow_dtype must be auto, float32 or float64; got '{cfg.synflow_dtype}'")
    if cfg.synflow_rounds < 1:
        raise ConfigError(f"method.synflow_rounds must be >= 1; got {cfg.synflow_rounds}")
    if cfg.grasp_temperature <= 0:
        raise ConfigError(f"method.grasp_temperature must be > 0; got {cfg.grasp_temperature}")
    classes = cfg.score_classes
    if classes is not None and not isinstance(classes, int) and not all(isinstance(c, int) for c in classes):
        raise ConfigError(f"method.score_classes must be null, a number of classes or a list of class ids; got {classes}")


def mask_for(session, criterion: str, cfg, q: float) -> tuple[Mask, dict]:
    """The mask that keeps floor((1 - q) D) prunable weights ranked by `criterion`, spread over the
    layers by `cfg.budget` (global top-k unless uniform/ERK); SynFlow prunes iteratively."""
    D = sum(p.numel() for p in session.params.values())
    k = kept_count(q, D)
    if criterion == "synflow" and k < D:
        mask, info = synflow_iterative(score_context(session, cfg), k, q)
        if info.get("float64"):
            session.log("synflow: path norm left float32's safe range; scored in float64")
        return mask, {"criterion": criterion, "kept": k, **info}
    scores = compute_scores(session, criterion, cfg)
    if cfg.budget == "global":
        mask = global_mask(scores, k)
    else:
        mask = layerwise_mask(scores, BUDGETS.get(cfg.budget)(session.params, k))
    return mask, {"criterion": criterion, "kept": k}
