"""`trainer.malloc=retain|default`: whether the process keeps the memory that freed tensors leave behind.

A training step frees and allocates the same tensors again every step (activations, the im2col columns
of the sparse kernels, gradients). glibc serves an allocation above its mmap threshold (128 KB at start,
rising with what is freed) by fresh pages from the OS and gives them back when the tensor is freed, and
trims the heap's top above 128 KB: the next step's tensors then start on untouched memory, paying the
kernel's page faults and zeroing on every step. `retain` (mallopt(3)) serves allocations up to 32 MB from
the heap and never trims it, so a step reuses the previous step's memory; memory the process once held
stays with it. Measured (scripts/bench_sparse.py, one thread): a masked dense LeNet-300-100 step at batch
100 took 3.9 ms instead of 4.8 ms, the same step on sparse kernels 2.0 ms instead of 2.9 ms.
A no-op where the C library is not glibc (macOS, musl); PyTorch's CUDA memory has its own caching allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("sparse_exp")

MODES = ("retain", "default")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest dynamic threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64 bit)


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError outside glibc)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Keep freed memory in the process (see above); False where not applied (not glibc, or refused)."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def configure(mode: str) -> bool:
    """Apply `trainer.malloc`; returns whether freed memory is retained."""
    if mode != "retain":
        return False
    applied = retain_freed_memory()
    if not applied:
        log.info("trainer.malloc=retain: not a glibc process; the allocator keeps its own settings")
    return applied
