"""Evaluation pass: loss and accuracy accumulated on the device, one host sync at the end.
Under torchrun each rank evaluates its part of the set and the sums are added over the ranks."""
from __future__ import annotations

import torch
from torch import nn

from sparse_exp import distributed


@torch.no_grad()
def evaluate(model: nn.Module, source, device: torch.device, autocast=None) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in source.epoch(0):
        with autocast() if autocast else torch.autocast(device.type, enabled=False):
            out = model(x)
        loss_sum += nn.functional.cross_entropy(out.float(), y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
        count += y.numel()
    loss_sum, correct, count = distributed.sum_across_ranks(loss_sum, correct, count)
    if count == 0:
        return float("nan"), float("nan")
    return float(loss_sum) / count, int(correct) / count
