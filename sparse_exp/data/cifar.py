"""CIFAR-10 and CIFAR-100: 32x32 RGB, 50k training / 10k test images, read from the official
"python version" pickles (`<root>/cifar-10-batches-py`, `<root>/cifar-100-python`).

We unpickle the batches ourselves (as torchvision does) instead of instantiating
`torchvision.datasets.CIFAR10`, whose md5 check rejects anything but the exact official files;
torchvision is only used to download when `dataset.download=true`. The pickled rows are already
channel-first (3 x 32 x 32), so they become an (N, 3, 32, 32) uint8 tensor without a transpose.
Augmentation (appendix A.3, IP appendix H): zero-pad 4, random 32x32 crop, random horizontal flip.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from sparse_exp.data import DATASETS
from sparse_exp.data.base import Data
from sparse_exp.data.tensor_source import build_tensor_data
from sparse_exp.errors import ConfigError

# name -> (folder, training files, test files, label key, classes, human name, torchvision class)
_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        10,
        "CIFAR-10",
        "CIFAR10",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100, "CIFAR-100", "CIFAR100"),
}


def _read_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # the official files are Python-2 pickles
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(entry[label_key]) != len(data):
            raise ConfigError(f"dataset.root: {path} is not a CIFAR batch (data shape {data.shape})")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar(name: str, root: str | Path, download: bool = False):
    """(train_x, train_y, test_x, test_y, folder) with x as (N, 3, 32, 32) uint8 and y int64."""
    folder_name, train_files, test_files, label_key, _, human, tv_name = _LAYOUT[name]
    root = Path(root).expanduser()
    folder = root / folder_name
    missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing and download:
        import torchvision.datasets as tvd

        try:  # downloads and unpacks the official archive into <root>/<folder_name>
            getattr(tvd, tv_name)(str(root), train=True, download=True)
        except Exception as e:
            raise ConfigError(f"dataset.download: fetching {human} into {root} failed ({e})") from e
        missing = [f for f in train_files + test_files if not (folder / f).is_file()]
    if missing:
        raise ConfigError(
            f"dataset.root: no {human} python batches in {folder} (missing {', '.join(missing)}); "
            f"unpack the official python archive into dataset.root or set dataset.download=true"
        )
    train_x, train_y = _read_batches([folder / f for f in train_files], label_key)
    test_x, test_y = _read_batches([folder / f for f in test_files], label_key)
    return train_x, train_y, test_x, test_y, folder


def _build(name: str, cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    train_x, train_y, test_x, test_y, folder = load_cifar(name, cfg.root, cfg.download)
    return build_tensor_data(
        name,
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=_LAYOUT[name][4],
        val_fraction=cfg.val_fraction,
        pad=4 if cfg.augment else 0,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        device=device,
        origin=str(folder),
    )


@DATASETS.register("cifar10")
def build_cifar10(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    return _build("cifar10", cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=device)


@DATASETS.register("cifar100")
def build_cifar100(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    return _build("cifar100", cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=device)
