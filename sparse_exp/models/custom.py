"""`model=custom`: the user's own network, `model.target=my_pkg.nets:build_net`.

The callable is called as `build_net(num_classes=C, input_shape=(C, H, W), **model.kwargs)` and
returns an nn.Module. From then on it is handled like the built-in models: the weights of its
nn.Conv2d and nn.Linear layers are prunable (models/base.py), every KxK convolution (K > 1) gets a
filter basis in the interspace, and the seeded initialisation of models/init.py draws its conv,
linear and BatchNorm parameters (other modules keep what the callable gave them, drawn after
`torch.manual_seed(init seed)`, so they too follow from the seed).

Declarations a model of the tables makes by hand (models/base.py: `declare`) get defaults here
unless the callable made its own: medium sharing gives every KxK convolution its own basis (as
fine sharing does), nothing is exempt from the interspace, and the classifier that lottery tickets
keep dense is the last nn.Linear in module order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from torch import nn

from sparse_exp.config.schema import ModelConfig, register_schema
from sparse_exp.errors import ConfigError
from sparse_exp.models import MODELS
from sparse_exp.models.base import ModelSpec, spatial_convs
from sparse_exp.config.target import import_target


@register_schema("model", "custom")
@dataclass
class CustomModelConfig(ModelConfig):
    name: str = "custom"
    target: Optional[str] = None  # module:function returning an nn.Module
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the callable


def declare_defaults(model: nn.Module) -> nn.Module:
    """Add the declarations of models/base.py that `model` does not make itself (see the module doc)."""
    if not hasattr(model, "medium_groups"):
        model.medium_groups = {name: i for i, name in enumerate(spatial_convs(model))}
    if not hasattr(model, "fb_exempt"):
        model.fb_exempt = frozenset()
    if not hasattr(model, "classifier_name"):
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        model.classifier_name = linears[-1] if linears else None
    return model


def build_custom(model_cfg, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    fn = import_target(model_cfg.target, "model.target")
    kwargs = model_cfg.kwargs
    kwargs = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs or {})
    try:
        model = fn(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.target: {model_cfg.target}(num_classes=..., input_shape=..., **model.kwargs) "
                          f"failed ({exc}); the callable must accept num_classes and input_shape") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.target: {model_cfg.target} returned a {type(model).__name__}, not an nn.Module")
    return declare_defaults(model)


def _needs_config(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    raise ConfigError("model=custom is built from model.target; use sparse_exp.models.build.build_model(cfg, ...)")


MODELS.register("custom")(
    ModelSpec(
        build=_needs_config,
        input_shapes=(),  # any
        table="your own model",
        description="your own network: model.target=module:function (+ model.kwargs), called with num_classes and input_shape",
        from_config=build_custom,
    )
)
