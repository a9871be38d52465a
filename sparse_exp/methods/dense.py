"""Dense training: the baseline every table starts with (q = 0)."""
from dataclasses import dataclass

from sparse_exp.config.schema import MethodConfig
from sparse_exp.errors import ConfigError
from sparse_exp.methods.base import Method, register_method


@dataclass
class DenseConfig(MethodConfig):
    name: str = "dense"


@register_method("dense", DenseConfig)
class Dense(Method):
    @classmethod
    def validate(cls, cfg, run_cfg) -> None:
        super().validate(cfg, run_cfg)
        if cfg.compression != 0.0:
            raise ConfigError(f"method=dense trains every weight, so method.compression must be 0; got {cfg.compression} (choose a pruning method)")
