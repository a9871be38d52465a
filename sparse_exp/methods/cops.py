"""COPS: combined pruning scores with a controlled constraint (thesis chapter 4, Algorithm 4.1).

    method=cops method.target=snip method.control=grasp method.alpha=0.99 method.compression=0.99
    method=g_cops | m_cops | u_cops      # SNIP target with GraSP | magnitude | USNIP control

Both importances are computed in the same model state from the same scoring batches, normalised
to ||s||_1 = 1 (appendix A.4) and combined by `sparse_exp.sparsity.cops` over all prunable weights
globally, on the run's device: the target score S0 is minimised over masks with at most
d = floor((1 - q) D) weights subject to the control score S1(m) <= kappa = alpha * kappa_min
(eqs. 4.11, 4.27, 4.28). `method.mode=linear method.lam=L` is the baseline of section 4.4.4 /
Table 4.3: the d best of S0 + L * S1.

Logged per run (and in metrics.json under `cops`): S0 and S1 of the mask, kappa, kappa_min, lam*,
the bisection steps, and the similarity (eq. 4.29) of the mask to the target-only mask m(0) and
the control-only mask m(1) (eq. 4.9 for each score alone) - the quantities of Fig. 4.6 / Table 4.2.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method
from sparse_exp.seeding import generator
from sparse_exp.sparsity import cops as solver
from sparse_exp.sparsity.mask import Mask
from sparse_exp.sparsity.prune import validate_scoring
from sparse_exp.sparsity.scores import SCORES, score_context
from sparse_exp.sparsity.scores.config import ScoringConfig
from sparse_exp.sparsity.select import kept_count

MODES = ("cops", "linear")
PROJECTIONS = ("plus", "minus")


@dataclass
class CopsConfig(ScoringConfig):
    name: str = "cops"
    compression: float = 0.9
    target: str = "snip"  # the score S0 that is optimised (any registered score)
    control: str = "grasp"  # the score S1 that is constrained (G-COPS by default)
    # balance factor alpha_kappa in [0, 1): kappa = alpha * kappa_min (eq. 4.28); 0 = target only,
    # -> 1 = control only. 0.9 is the value of Fig. 4.8; tune it over the 14-point grid (section 4.4).
    alpha: float = 0.9
    mode: str = "cops"  # cops (Algorithm 4.1) | linear (the d best of S0 + lam * S1, section 4.4.4)
    lam: float = 1.0  # lambda of mode=linear
    projection: str = "plus"  # plus: feasible m+ (S1 <= kappa) | minus: m- (Theorem 4.3.1)
    eps: float = 1e-6  # numerical precision eps_n of the bisection (appendix A.4)


@register_method("cops", CopsConfig)
class Cops(Method):
    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        validate_scoring(cfg, "method.target", cfg.target)
        validate_scoring(cfg, "method.control", cfg.control)
        if cfg.budget != "global":
            raise ConfigError(f"method.budget: COPS combines the scores over all prunable weights (global); got '{cfg.budget}'")
        if not (isinstance(cfg.alpha, (int, float)) and 0.0 <= cfg.alpha < 1.0):
            raise ConfigError(
                f"method.alpha must lie in [0, 1) (the balance factor alpha_kappa of eq. 4.28: 0 = target only, "
                f"-> 1 = control only); got {cfg.alpha}"
            )
        if cfg.mode not in MODES:
            raise ConfigError(f"method.mode must be one of {', '.join(MODES)}; got '{cfg.mode}'")
        if not (math.isfinite(cfg.lam) and cfg.lam >= 0):
            raise ConfigError(f"method.lam must be a finite number >= 0 (the weight of S1 in S0 + lam * S1); got {cfg.lam}")
        if cfg.projection not in PROJECTIONS:
            raise ConfigError(f"method.projection must be plus (feasible m+) or minus (m-); got '{cfg.projection}'")
        if not (math.isfinite(cfg.eps) and cfg.eps > 0):
            raise ConfigError(f"method.eps must be > 0 (the bisection precision eps_n); got {cfg.eps}")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.stats: dict = {}

    # ------------------------------------------------------------------------------------------
    def importances(self, session) -> dict[str, torch.Tensor]:
        """{score name: flat importance in session.params order}: every score from the same
        scoring batches (fetched once) and the same model state, each with the random stream it
        has as a method of its own (so m(0)/m(1) are the masks `method=<score>` would see)."""
        ctx = score_context(session, self.cfg, stream="score")
        out = {}
        for name in dict.fromkeys((self.cfg.target, self.cfg.control)):
            own = dataclasses.replace(ctx, generator=generator(session.cfg.seed, "method", "score"))
            scores = SCORES.get(name)(own)
            out[name] = torch.cat([scores[n].detach().float().reshape(-1) for n in session.params])
        return out

    def prepare(self, session) -> None:
        cfg = self.cfg
        with session.timed_mask():
            D = sum(p.numel() for p in session.params.values())
            d = kept_count(cfg.compression, D)
            t0 = time.perf_counter()
            imp = self.importances(session)
            t_scores = time.perf_counter() - t0
            t0 = time.perf_counter()
            s0, msg0 = solver.normalise(imp[cfg.target], f"target ({cfg.target})")
            s1, msg1 = solver.normalise(imp[cfg.control], f"control ({cfg.control})")
            del imp
            messages = [m for m in (msg0, msg1) if m]
            if cfg.mode == "cops":
                res = solver.solve(s0, s1, d, alpha=float(cfg.alpha), eps=float(cfg.eps), projection=cfg.projection)
                keep = res.mask
                messages += res.messages
                stats = res.stats()
                stats.update(alpha=float(cfg.alpha), projection=cfg.projection)
            else:
                keep = solver.linear_combination(s0, s1, d, float(cfg.lam))
                m = keep.to(torch.float64)
                S0, S1 = float(s0 @ m), float(s1 @ m)
                kmin = solver.kappa_min_of(s1, d)
                # the linear mask solves COPS for kappa = S1(mask) (duality, section 4.4.4)
                stats = {"s0": S0, "s1": S1, "kappa": S1, "kappa_min": kmin, "lambda": float(cfg.lam), "steps": 0,
                         "d": d, "kept": int(torch.count_nonzero(keep)),
                         "alpha_equivalent": (S1 / kmin) if kmin < 0 else None}
            t_solve = time.perf_counter() - t0
            m0, m1 = solver.select_smallest(s0, d), solver.select_smallest(s1, d)
            stats.update(
                sim_target=_similarity(keep, m0), sim_control=_similarity(keep, m1),
                sim_target_control=_similarity(m0, m1), mode=cfg.mode, target=cfg.target, control=cfg.control,
                scores_s=t_scores, solver_s=t_solve,
            )
            mask = Mask.from_flat(keep.to(next(iter(session.params.values())).device), session.params)
        self.stats = stats
        for message in messages:
            session.log(f"WARNING: cops: {message}")
        if stats["kept"] == 0 and d > 0:
            raise RuntimeError(
                f"COPS kept no weight (d = {d}): no entry has a negative combined score, i.e. neither "
                f"{cfg.target} nor {cfg.control} gives any weight a positive importance; see the warnings above"
            )
        session.set_mask(mask, mode="prune")
        self.log_stats(session)

    def log_stats(self, session) -> None:
        st = self.stats
        if st.get("mode") == "linear":
            head = f"cops (linear, S0 + {st['lambda']:g} S1)"
        else:
            head = (f"cops ({st['target']} | {st['control']}, alpha={st['alpha']:g}): kappa_min={st['kappa_min']:.6g} "
                    f"kappa={st['kappa']:.6g} lambda*={st['lambda']:.6g} after {st['steps']} bisection steps")
        session.log(
            f"{head}; S0={st['s0']:.6g} S1={st['s1']:.6g}; kept {st['kept']:,} of d={st['d']:,}; "
            f"sim to {st['target']}-only {st['sim_target']:.4f}, to {st['control']}-only {st['sim_control']:.4f} "
            f"(between them {st['sim_target_control']:.4f}); scores {st['scores_s']:.2f} s, solver {st['solver_s']:.2f} s"
        )
        session.scalars({f"cops/{k}": st[k] for k in ("s0", "s1", "kappa", "kappa_min", "lambda", "steps",
                                                      "sim_target", "sim_control")
                         if isinstance(st.get(k), (int, float)) and math.isfinite(st[k])}, 0)

    # state (a resumed run skips prepare but still reports the statistics) --------------------
    def state_dict(self) -> dict:
        return {"stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        self.stats = dict(state.get("stats", {}))

    def summary(self) -> dict:
        keys = ("s0", "s1", "kappa", "kappa_min", "lambda", "steps", "sim_target", "sim_control")
        st = self.stats
        out = {k: (float(st[k]) if isinstance(st.get(k), (int, float)) else None) for k in keys}
        out["steps"] = int(st["steps"]) if "steps" in st else None
        out.update({k: v for k, v in st.items() if k not in keys})
        return {"cops": out} if st else {}


def _similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """sim(m, m~) = |m * m~|_0 / max(|m|_0, |m~|_0), eq. (4.29)."""
    b = b.to(a.device)
    den = max(int(torch.count_nonzero(a)), int(torch.count_nonzero(b)))
    return float(torch.count_nonzero(a & b)) / den if den else 1.0


# the named shorthands of section 4.4: SNIP target, one control each -------------------------------
@dataclass
class GCopsConfig(CopsConfig):
    name: str = "g_cops"
    control: str = "grasp"


@dataclass
class MCopsConfig(CopsConfig):
    name: str = "m_cops"
    control: str = "magnitude"


@dataclass
class UCopsConfig(CopsConfig):
    name: str = "u_cops"
    control: str = "usnip"


@register_method("g_cops", GCopsConfig)
class GCops(Cops):
    """G-COPS: SNIP target, GraSP control."""


@register_method("m_cops", MCopsConfig)
class MCops(Cops):
    """M-COPS: SNIP target, magnitude control."""


@register_method("u_cops", UCopsConfig)
class UCops(Cops):
    """U-COPS: SNIP target, USNIP (random labels) control (Fig. 4.8)."""

