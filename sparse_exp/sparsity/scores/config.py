"""Scoring settings shared by every method that computes pruning scores: every scoring choice is
an explicit config field, so it is recorded in config.yaml and metrics.json."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from sparse_exp.config.schema import MethodConfig


@dataclass
class ScoringConfig(MethodConfig):
    # Batches of training data for SNIP/GraSP/USNIP: 1 for the FreezeNet experiments (Algorithm
    # 3.1), 100 for the CIFAR COPS/IP experiments, 15 for ImageNet (appendix G.4).
    score_batches: int = 1
    score_batch_size: Optional[int] = None  # None: trainer.batch_size
    # Only these classes are seen while scoring (Fig. 4.8): null = all, an int #T = #T classes
    # drawn once with a fixed generator (the same for every seed and method), or a list of ids.
    score_classes: Optional[Any] = None
    score_bn_mode: str = "train"  # BatchNorm mode while scoring SNIP/GraSP (train, appendix G.4)
    grasp_temperature: float = 200.0  # softmax temperature T of the official GraSP code
    synflow_rounds: int = 100  # iterative SynFlow: rounds with the exponential schedule (eq. A.81)
    synflow_dtype: str = "auto"  # float64 | float32 | auto (float32 while the path norm stays in a safe range)
    budget: str = "global"  # global | uniform | erk: how the kept weights are spread over layers
