"""Independent random streams derived from the one `seed` of a run.

Initialisation, the train/validation split, the data order, the augmentation, the scoring data and
mask updates each draw from their own generator, so changing how one of them consumes random
numbers never shifts another (and a resumed epoch sees exactly the numbers it would have seen).
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *stream: object) -> int:
    """A 63-bit seed that depends only on `seed` and the stream labels (e.g. "order", epoch)."""
    text = "/".join([str(int(seed)), *map(str, stream)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *stream: object, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *stream))
    return g
