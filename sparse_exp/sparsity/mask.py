"""The Mask object: which prunable entries are trained (True) and which are pruned/frozen (False).

A mask is validated against the model (same names, same shapes, boolean), hashable (sha256 over
names, shapes and packed bits in model order), saveable without pickle (npz of packed bits), and
reports the densities and compression rates the papers quote.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch


class Mask:
    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            if m.dtype != torch.bool:
                if not torch.all((m == 0) | (m == 1)):
                    raise ValueError(f"mask '{name}' is not binary")
                m = m.bool()
            self.masks[name] = m

    # construction -------------------------------------------------------------------------
    @classmethod
    def ones(cls, params: Mapping[str, torch.Tensor]) -> "Mask":
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()})

    @classmethod
    def from_flat(cls, keep: torch.Tensor, params: Mapping[str, torch.Tensor]) -> "Mask":
        """Split a flat boolean vector (concatenated in `params` order) into per-layer masks."""
        out, offset = {}, 0
        for name, p in params.items():
            n = p.numel()
            out[name] = keep[offset : offset + n].view_as(p).to(device=p.device)
            offset += n
        if offset != keep.numel():
            raise ValueError(f"flat mask has {keep.numel()} entries, the parameters {offset}")
        return cls(out)

    # checks -------------------------------------------------------------------------------
    def check(self, params: Mapping[str, torch.Tensor]) -> "Mask":
        if list(self.masks) != list(params):
            missing = set(params) - set(self.masks)
            extra = set(self.masks) - set(params)
            raise ValueError(f"mask does not fit the model: missing {sorted(missing)}, extra {sorted(extra)}")
        for name, p in params.items():
            if tuple(self.masks[name].shape) != tuple(p.shape):
                raise ValueError(
                    f"mask '{name}' has shape {tuple(self.masks[name].shape)}, the parameter {tuple(p.shape)}"
                )
        return self

    # statistics ---------------------------------------------------------------------------
    def flat(self) -> torch.Tensor:
        return torch.cat([m.reshape(-1) for m in self.masks.values()])

    def kept(self) -> int:
        return int(sum(int(torch.count_nonzero(m)) for m in self.masks.values()))

    def numel(self) -> int:
        return int(sum(m.numel() for m in self.masks.values()))

    def density(self) -> float:
        n = self.numel()
        return self.kept() / n if n else 1.0

    def layer_densities(self) -> dict[str, float]:
        return {n: int(torch.count_nonzero(m)) / m.numel() if m.numel() else 1.0 for n, m in self.masks.items()}

    def layers(self) -> list[dict]:
        return [
            {"name": n, "numel": m.numel(), "kept": int(torch.count_nonzero(m)), "density": int(torch.count_nonzero(m)) / max(1, m.numel())}
            for n, m in self.masks.items()
        ]

    def empty_layers(self) -> list[str]:
        return [n for n, m in self.masks.items() if m.numel() and not bool(m.any())]

    def similarity(self, other: "Mask") -> float:
        """sim(m, m~) = |m * m~|_0 / max(|m|_0, |m~|_0), eq. 4.29."""
        a, b = self.flat(), other.flat().to(self.flat().device)
        denom = max(int(a.sum()), int(b.sum()))
        return float((a & b).sum()) / denom if denom else 1.0

    # identity -----------------------------------------------------------------------------
    def sha256(self) -> str:
        h = hashlib.sha256()
        for name, m in self.masks.items():
            h.update(f"{name}:{tuple(m.shape)};".encode())
            h.update(np.packbits(m.detach().cpu().numpy().reshape(-1)).tobytes())
        return h.hexdigest()

    def equal(self, other: "Mask") -> bool:
        return list(self.masks) == list(other.masks) and all(
            torch.equal(self.masks[n].cpu(), other.masks[n].cpu()) for n in self.masks
        )

    def to(self, device: torch.device | str) -> "Mask":
        return Mask({n: m.to(device) for n, m in self.masks.items()})

    def clone(self) -> "Mask":
        return Mask({n: m.clone() for n, m in self.masks.items()})

    # persistence (no pickle) --------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        return {n: m.detach().to("cpu", copy=True) for n, m in self.masks.items()}

    def save(self, path: str | Path) -> None:
        names = list(self.masks)
        arrays = {f"m{i}": np.packbits(self.masks[n].cpu().numpy().reshape(-1)) for i, n in enumerate(names)}
        header = json.dumps({"names": names, "shapes": [list(self.masks[n].shape) for n in names]})
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, header=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "Mask":
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            masks = {}
            for i, (name, shape) in enumerate(zip(header["names"], header["shapes"])):
                n = int(np.prod(shape)) if shape else 1
                bits = np.unpackbits(z[f"m{i}"])[:n].astype(bool).reshape(shape)
                masks[name] = torch.from_numpy(bits).to(device)
        return cls(masks)
