"""Batched CIFAR-style augmentation on the run's device: zero-pad, random crop, random flip.

The standard per-sample pipeline `RandomCrop(size, padding=p)` + `RandomHorizontalFlip()` pads
the raw image with zeros (black), crops a window at a random offset in [0, 2p] per axis and flips
half the images. `pad_crop_flip` does exactly that for a whole batch with two `gather`s, given the
offsets and flip flags, so it can be compared pixel for pixel with torchvision's functional
transforms; `draw_pad_crop_flip` draws those parameters from a seeded CPU generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_pad_crop_flip(n: int, pad: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (top, left) crop offsets in [0, 2*pad] (n x 2, int64) and flip flags (n, bool)."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    return offsets, flips


def pad_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad x (N, C, H, W) by `pad`, crop H x W at offsets[i] = (top, left), flip where flips[i].

    Equals, per sample, `hflip(crop(pad(x[i], pad), top, left, H, W))` (flip only where flagged).
    Works for any dtype, so uint8 images are augmented before normalisation as in torchvision.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # zero fill, like RandomCrop(padding=pad)
    offsets = offsets.to(x.device)
    flips = flips.to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H) source rows per output row
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (N, W) source columns per output column
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flip just reads the columns backwards
    rows = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, rows)
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
