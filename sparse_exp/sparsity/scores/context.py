"""What a score function gets: the model, its prunable parameters and the scoring data."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
from torch import nn


@dataclass
class ScoreContext:
    model: nn.Module
    params: Mapping[str, nn.Parameter]  # prunable parameters, model order
    batches: Callable[[], list]  # scoring batches (fetched lazily: SynFlow and magnitude need none)
    num_classes: int
    input_shape: tuple[int, int, int]
    cfg: object  # the method config (ScoringConfig fields)
    generator: torch.Generator  # the method's own random stream (random scores, USNIP labels)
    mask: Optional[Mapping[str, torch.Tensor]] = None  # current mask: scores of masked-out entries are
    #                                                    computed on the masked model

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device


@contextlib.contextmanager
def scoring_state(model: nn.Module, bn_train: bool):
    """Score without side effects: BatchNorm statistics, train/eval flags and .grad are restored
    (scoring in BN train mode would otherwise move the running statistics)."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None
    model.train(bn_train)
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        for name, m in model.named_modules():
            m.training = modes[name]
        for name, p in model.named_parameters():
            p.grad = grads[name]
