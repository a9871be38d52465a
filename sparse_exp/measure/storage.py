"""What the filter bases add to a model's parameters and storage (IP appendix C, Table A2; Fig. 5.10).

Counting convention of metrics.json (`params`, `compression`):
* q            = 1 - trained prunable (coefficients/weights) / all prunable            (the papers' q)
* q_with_bases = 1 - (trained prunable + trained basis parameters) / (all prunable + basis parameters)
  - the compression that "takes all FB parameters into account" (Fig. 5.10). For SP both agree.
"""
from __future__ import annotations

from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.sparsity.select import kept_count


def basis_counts(model: nn.Module) -> dict[str, int]:
    """Basis key -> number of parameters (G n K^2) in model.fb_bases; {} for a spatial model."""
    bases = getattr(model, "fb_bases", None)
    return {} if bases is None else {key: p.numel() for key, p in bases.items()}


def basis_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    bases = getattr(model, "fb_bases", None)
    if bases is None:
        return 0
    return sum(p.numel() for p in bases.values() if p.requires_grad or not trainable_only)


def q_with_bases(trained: int, prunable: int, trained_bases: int, bases: int) -> float:
    """1 - (trained coefficients + trained bases) / (coefficients + bases)."""
    total = prunable + bases
    return 1.0 - (trained + trained_bases) / total if total else 0.0


def coefficient_compression(q_total: float, prunable: int, bases: int) -> float:
    """The coefficient compression q that gives `q_total` once the (trained) bases are counted:
    the number of trained coefficients is (1 - q_total) (prunable + bases) - bases (Fig. 5.10)."""
    kept = (1.0 - q_total) * (prunable + bases) - bases
    if kept < 0:
        raise ValueError(f"the {bases} basis parameters alone exceed the budget of q_total={q_total}")
    return 1.0 - kept / prunable


def kept_with_bases(q_total: float, prunable: int, bases: int) -> int:
    """Coefficients kept when q counts the bases: floor((1 - q)(D + B)) - B (method.count_bases).

    IP then keeps slightly fewer coefficients than SP keeps weights at the same q, as the IP
    appendix (footnote A.3) describes its experiments, and q_with_bases equals q."""
    kept = kept_count(q_total, prunable + bases) - bases
    if kept < 0:
        raise ConfigError(
            f"method.compression={q_total} with method.count_bases=true leaves no coefficient: the {bases:,} basis "
            f"parameters alone exceed the budget; the largest reachable q is {1 - bases / (prunable + bases):.6f}"
        )
    return kept


def coefficient_q(kept: int, prunable: int) -> float:
    """The coefficient compression whose kept_count over `prunable` is exactly `kept`."""
    if kept >= prunable:
        return 0.0
    return 1.0 - (kept + 0.25) / prunable  # the quarter absorbs rounding in kept_count's floor
