"""The one interface every method implements (docs/architecture.md shows where it sits).

The trainer calls these hooks at fixed points and never asks which method it runs:

    run(session)                    driver: how many trainings and what happens between them
                                    (default: prepare, then one training; LTH/FT override it)
    prepare(session)                before training: compute the initial mask from scores and data
    after_backward(trainer, step)   dense gradients are available (RigL reads them here)
    needs_dense_gradients(trainer, step)  True where after_backward reads dL/dW of pruned entries
                                    (sparse kernels then compute the full weight gradient that step)
    after_step(trainer, step)       after the optimizer step (mask updates on a schedule)
    on_epoch_end(trainer, epoch)    after evaluation of an epoch
    state_dict / load_state_dict    everything needed to resume (RNG states, rounds, snapshots)
    summary()                       method-specific figures for metrics.json (e.g. COPS statistics)

Adding a method means one module in this package (class + config dataclass, registered with
`@register_method`) and one YAML file in conf/method/.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sparse_exp.config.schema import MethodConfig, register_schema
from sparse_exp.errors import ConfigError
from sparse_exp.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from sparse_exp.training.session import Session
    from sparse_exp.training.trainer import Trainer


class Method:
    name: ClassVar[str] = "base"
    schema: ClassVar[type] = MethodConfig
    # Whether this method can run in the interspace (sharing != none), and whether it must.
    interspace: ClassVar[str] = "optional"  # "optional" | "required"

    def __init__(self, cfg: Any):
        self.cfg = cfg

    # validation ---------------------------------------------------------------------------
    @classmethod
    def validate(cls, cfg: Any, run_cfg: Any) -> None:
        """Raise ConfigError (one sentence naming the key) for values the schema types cannot catch."""
        q = cfg.compression
        if not 0.0 <= q <= 1.0:
            raise ConfigError(f"method.compression must lie in [0, 1] (the fraction q of weights removed); got {q}")
        if cls.interspace == "required" and run_cfg.sharing.name == "none":
            raise ConfigError(
                f"method={cls.name} prunes in the interspace and needs sharing=coarse|medium|fine|in_nc|out_nc, not sharing=none"
            )

    # driver -------------------------------------------------------------------------------
    def run(self, session: "Session") -> None:
        if not session.resuming_phase("train"):
            self.prepare(session)
        session.train("train")

    def prepare(self, session: "Session") -> None:
        """Compute the initial mask. The dense method keeps everything."""

    # hooks --------------------------------------------------------------------------------
    def after_backward(self, trainer: "Trainer", step: int) -> None:
        pass

    def needs_dense_gradients(self, trainer: "Trainer", step: int) -> bool:
        return False

    def after_step(self, trainer: "Trainer", step: int) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None:
        pass

    # state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        return {}


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str, schema: type = MethodConfig):
    """Register a Method subclass under `name` and its config dataclass as schema/method/<name>."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        cls.schema = schema
        register_schema("method", name)(schema)
        METHODS.register(name)(cls)
        return cls

    return add
