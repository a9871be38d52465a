"""Weight initialisations (Tables A.9-A.11; thesis 3.4.3.1; IP appendix eq. A.67).

Every scheme is `fn(tensor, generator) -> None` and fills `tensor` in place. Fans follow PyTorch's
convention: for a weight of shape (c_out, c_in, *kernel), fan_in = c_in * prod(kernel) and
fan_out = c_out * prod(kernel) (a Linear weight (out, in) has fan_in = in, fan_out = out).

`initialise` draws all random numbers from ONE CPU generator seeded with `seed`, in module order,
and copies the CPU values into the parameters. The initial (and, for FreezeNet, frozen) weights are
therefore the same on every device and are fully determined by that one seed.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from sparse_exp.registry import Registry

WeightInit = Callable[[torch.Tensor, torch.Generator], None]

INITS: Registry[WeightInit] = Registry("init")


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as defined in the module docstring."""
    if tensor.dim() < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def xavier_std(tensor: torch.Tensor) -> float:
    """Glorot & Bengio: std = sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(tensor)
    return math.sqrt(2.0 / (fan_in + fan_out))


@INITS.register("xavier_normal")
def xavier_normal(tensor: torch.Tensor, generator: torch.Generator) -> None:
    """N(0, 2 / (fan_in + fan_out)) (FreezeNet on MNIST/CIFAR-10, Table A.9)."""
    nn.init.xavier_normal_(tensor, generator=generator)


@INITS.register("kaiming_uniform")
def kaiming_uniform(tensor: torch.Tensor, generator: torch.Generator) -> None:
    """U(-b, b) with b = sqrt(6 / fan_in): He et al. with the ReLU gain sqrt(2) (Tables A.9, A.10).
    Not PyTorch's layer default, which uses a = sqrt(5), i.e. b = sqrt(1 / fan_in)."""
    nn.init.kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="relu", generator=generator)


@INITS.register("kaiming_normal")
def kaiming_normal(tensor: torch.Tensor, generator: torch.Generator) -> None:
    """N(0, 2 / fan_in), i.e. std = sqrt(2 / (c_in K^2)) (IP appendix eq. A.67)."""
    nn.init.kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="relu", generator=generator)


@INITS.register("pm_sigma")
def pm_sigma(tensor: torch.Tensor, generator: torch.Generator) -> None:
    """Each weight is +sigma or -sigma with a fair random sign, sigma the Xavier-normal std
    (thesis 3.4.3.1): same mean and variance as Xavier-normal, but a frozen weight needs one bit."""
    sign = torch.randint(0, 2, tuple(tensor.shape), generator=generator, dtype=torch.float32) * 2 - 1
    tensor.copy_(sign * xavier_std(tensor))


def _fill(param: torch.Tensor, fill: WeightInit, generator: torch.Generator) -> None:
    """Generate in float32 on the CPU, then copy to the parameter's device and dtype."""
    values = torch.empty(param.shape, dtype=torch.float32)
    fill(values, generator)
    param.copy_(values)


@torch.no_grad()
def initialise(model: nn.Module, scheme: str, seed: int, strict: bool = True) -> None:
    """Initialise every parameter of `model` from `seed` alone.

    In `model.named_modules()` order: a module with a method `init_parameters(weight_init,
    generator)` initialises itself and its children (the interspace layer: `weight_init` is the
    scheme function, `generator` the shared CPU generator); conv/linear weights get `scheme`, their
    biases 0; BatchNorm weights 1, biases 0, running statistics reset. Any other module that owns
    parameters is an error, so no parameter silently keeps PyTorch's default initialisation
    (`strict=False`, for a user's own model: such modules keep their values).
    """
    fill = INITS.get(scheme)  # unknown scheme -> UnknownName listing the valid ones
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    self_initialised: list[str] = []
    for name, module in model.named_modules():
        if any(prefix == "" or name.startswith(prefix + ".") for prefix in self_initialised):
            continue  # a parent's init_parameters already covered this module
        if callable(getattr(module, "init_parameters", None)):
            module.init_parameters(fill, generator)
            self_initialised.append(name)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            _fill(module.weight, fill, generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            if module.affine:
                module.weight.fill_(1.0)
                module.bias.zero_()
        elif strict and any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"initialise: no rule for module '{name}' of type {type(module).__name__}")
