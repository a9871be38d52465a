"""Provenance recorded with every run: git revision, versions, device, world size."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

import sparse_exp


def git_revision() -> str | None:
    root = Path(sparse_exp.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(cfg, device: torch.device) -> dict:
    world = torch.distributed.get_world_size() if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
    return {
        "device": str(device),
        "world_size": world,
        "threads": torch.get_num_threads(),
        "git": git_revision(),
        "versions": {
            "sparse_exp": sparse_exp.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
