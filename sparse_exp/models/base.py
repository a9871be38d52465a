"""What a registered model declares besides its nn.Module.

* Prunable weights are the weights of conv and linear layers (never biases or BatchNorm); a layer
  class may name another parameter as its prunable one with a class attribute `PRUNABLE` (the
  filter-basis convolution prunes its coefficients).
* `medium_groups` maps the qualified name of every KxK convolution with K > 1 to its group in the
  medium filter-basis sharing scheme (Tables A.3, A.5, A.7; section 5.4.3.1). Coarse sharing (one
  basis per kernel size) and fine sharing (one basis per layer) follow from the same list.
* `fb_exempt` names KxK convolutions that keep the standard basis in the interspace (the 7x7 stem
  of ResNet18 for ImageNet, section 5.5).
* `classifier_name` is the qualified name of the final Linear layer (lottery tickets keep it dense).

A spec built from its config (`from_config`, the user's own model of models/custom.py) takes any
input shape (`input_shapes` empty). `lookalikes` names other networks with the same parameter names
and shapes but a different function, so a weights file without an architecture tag cannot be
trusted to be this one (models/pretrained.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[int, tuple[int, int, int]], nn.Module]  # (num_classes, input_shape) -> model
    input_shapes: tuple[tuple[int, int, int], ...]  # (C, H, W) the architecture is defined for
    table: str  # where the papers define it, e.g. "Table A.3"
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    from_config: Optional[Callable[..., nn.Module]] = None  # (model cfg, num_classes, input_shape) -> model
    lookalikes: tuple[str, ...] = field(default_factory=tuple)

    def create(self, model_cfg, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        """The bare architecture (PyTorch's default initialisation; models/build.py initialises it)."""
        if self.from_config is not None:
            return self.from_config(model_cfg, num_classes, tuple(input_shape))
        return self.build(num_classes, tuple(input_shape))


def prunable_name(module: nn.Module) -> str | None:
    """Name of the prunable parameter of a leaf module, or None."""
    declared = getattr(type(module), "PRUNABLE", None)
    if declared is not None:
        return declared
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return "weight"
    return None


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Qualified parameter name -> prunable parameter, in module order (the order masks are hashed in)."""
    out: dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        pname = prunable_name(module)
        if pname is not None:
            out[f"{mod_name}.{pname}" if mod_name else pname] = getattr(module, pname)
    return out


def spatial_convs(model: nn.Module) -> list[str]:
    """Qualified names of the KxK convolutions with K > 1, in module order (the filter-basis candidates)."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1
    ]


def declare(
    model: nn.Module,
    *,
    medium_groups: dict[str, int],
    classifier_name: str,
    fb_exempt: Iterable[str] = (),
) -> nn.Module:
    """Attach the declarations above to a freshly built model, checking them against its modules."""
    exempt = frozenset(fb_exempt)
    expected = [n for n in spatial_convs(model) if n not in exempt]
    if sorted(medium_groups) != sorted(expected):
        raise ValueError(
            f"medium_groups must cover exactly the KxK convs {expected} (minus fb_exempt), got {sorted(medium_groups)}"
        )
    modules = dict(model.named_modules())
    if not isinstance(modules.get(classifier_name), nn.Linear):
        raise ValueError(f"classifier_name '{classifier_name}' is not a Linear layer of the model")
    model.medium_groups = dict(medium_groups)
    model.fb_exempt = exempt
    model.classifier_name = classifier_name
    return model
