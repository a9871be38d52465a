"""Per-layer geometry of the prunable layers, for layer-wise budgets (ERK) and FLOP counts."""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp.models.base import prunable_name


def _square(value, what: str, name: str) -> int:
    """The papers' kernels and strides are all quadratic (appendix A.2); return the side length."""
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    if a != b:
        raise ValueError(f"layer '{name}' has a non-square {what} {value}")
    return int(a)


def describe_layers(model: nn.Module) -> list[dict]:
    """One row per prunable layer, in module order:
    name (module), kind ('conv' | 'linear'), c_in, c_out, kernel (K, 1 for linear), stride
    (1 for linear), param (qualified name of the prunable parameter), numel (of that parameter).

    Layers are recognised by their attributes (in_channels/kernel_size or in_features), so a
    filter-basis convolution that mirrors nn.Conv2d's attributes is described the same way.
    """
    rows = []
    for name, module in model.named_modules():
        pname = prunable_name(module)
        if pname is None:
            continue
        if hasattr(module, "in_channels"):
            row = dict(
                kind="conv",
                c_in=module.in_channels,
                c_out=module.out_channels,
                kernel=_square(module.kernel_size, "kernel", name),
                stride=_square(module.stride, "stride", name),
            )
        elif hasattr(module, "in_features"):
            row = dict(kind="linear", c_in=module.in_features, c_out=module.out_features, kernel=1, stride=1)
        else:
            raise TypeError(f"cannot describe prunable layer '{name}' of type {type(module).__name__}")
        param = getattr(module, pname)
        rows.append(dict(name=name, **row, param=f"{name}.{pname}" if name else pname, numel=param.numel()))
    return rows


@torch.no_grad()
def layer_output_sizes(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """Module name -> (H_out, W_out) of every prunable layer for one input of `input_shape`
    ((1, 1) for linear layers), measured with forward hooks on a single zero input in eval mode.
    The model's train/eval flags and BatchNorm statistics are left as they were."""
    sizes: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        def record(_module, _inputs, output):
            sizes[name] = tuple(output.shape[-2:]) if output.dim() == 4 else (1, 1)

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if prunable_name(module) is not None
    ]
    modes = {m: m.training for m in model.modules()}
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return sizes
