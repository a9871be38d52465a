"""Storage sizes of a sparse or frozen network (thesis Table 3.2, IP appendix C and eq. A.2).

All sizes in kB = 1024 bytes, 32-bit values, as Table 3.2 (LeNet-5-Caffe: 431,080 x 4 B = 1,683.9 kB).

    dense_kb            every parameter stored raw
    trained_values_kb   only the trained parameters (kept weights, biases, BatchNorm, bases): the
                        "network size" of Table 3.2; frozen weights come back from the seed, pruned
                        ones are zero, so FreezeNet and SNIP cost the same (plus FreezeNet's 32-bit seed)
    compression_factor  dense_kb / trained_values_kb (Table 3.2)
    csr_kb              prunable tensors in CSR (rows = output units; float32 values, int32 column
                        indices and row pointers) + everything else raw + seed
    (FreezeNet-WD: its frozen weights moved under weight decay, so nothing comes back from the seed;
    export_run passes the non-zero pattern of the stored weights as `masks` and mode "stored")
    mask_values_kb      a bit-packed mask (1 bit per prunable entry) + trained values + seed
    entropy_kb          the ideal entropy-coded mask, sum over layers of n_l * H(p_l) bits (eq. A.2),
                        + trained values + seed
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

KB = 1024.0


def binary_entropy(p: float) -> float:
    """S = -p log2 p - (1 - p) log2(1 - p) bits per mask entry (eq. A.2)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def csr_bytes(mask: torch.Tensor) -> int:
    rows = mask.shape[0] if mask.dim() > 0 else 1
    nnz = int(mask.sum())
    return 4 * nnz + 4 * nnz + 4 * (rows + 1)


def storage_report(total_params: int, trainable_params: int, masks: Mapping[str, torch.Tensor],
                   mode: str, seed_bits: int = 32) -> dict:
    """Sizes for a model with `total_params` parameters of which `trainable_params` are trained;
    `masks` are the keep-masks of the prunable tensors (all ones for dense training)."""
    prunable = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    other = total_params - prunable  # biases, BatchNorm, bases: always stored
    seed = seed_bits / 8 if mode == "freeze" else 0.0
    dense = 4.0 * total_params
    trained = 4.0 * trainable_params
    csr = sum(csr_bytes(m.reshape(m.shape[0], -1) if m.dim() > 1 else m.reshape(1, -1)) for m in masks.values()) + 4.0 * other
    mask_bits = prunable / 8.0
    entropy_bits = sum(m.numel() * binary_entropy(float(m.float().mean())) for m in masks.values() if m.numel()) / 8.0
    return {
        "dense_kb": dense / KB,
        "trained_values_kb": trained / KB,
        "compression_factor": dense / trained if trained else float("inf"),
        "csr_kb": (csr + seed) / KB,
        "mask_values_kb": (mask_bits + trained + seed) / KB,
        "entropy_kb": (entropy_bits + trained + seed) / KB,
        "kept_weights": kept,
        "prunable_weights": prunable,
    }
