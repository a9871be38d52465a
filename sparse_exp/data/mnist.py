"""MNIST and Fashion-MNIST: 28x28 grayscale, 60k training / 10k test images in IDX files.

Files are looked for, in order, in `<root>/<MNIST|FashionMNIST>/raw/` (torchvision's download
layout), `<root>/<mnist|fashion_mnist|fashion-mnist>/`, `<root>/` and, for Fashion-MNIST, the
Debian package's `/usr/share/datasets/fashion-mnist` - the last only while dataset.root is left at
its default: an explicit root that does not hold the files is an error, never silently replaced by
the system copy. No augmentation (appendix A.1), so `dataset.augment=true` is refused rather than ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from sparse_exp.data import DATASETS
from sparse_exp.data.base import Data
from sparse_exp.data.idx import find_idx_dir, load_idx_split
from sparse_exp.data.tensor_source import build_tensor_data
from sparse_exp.config.schema import DatasetConfig
from sparse_exp.errors import ConfigError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class _Source(NamedTuple):
    torchvision_name: str  # class in torchvision.datasets, also its folder under root
    folders: tuple[str, ...]  # other folder names under root
    human: str
    fix: str  # how to fix a missing dataset


_SOURCES = {
    "mnist": _Source("MNIST", ("mnist",), "MNIST", "point dataset.root at the files or set dataset.download=true"),
    "fashion_mnist": _Source(
        "FashionMNIST",
        ("fashion_mnist", "fashion-mnist"),
        "Fashion-MNIST",
        "install the Debian package dataset-fashion-mnist, point dataset.root at the files "
        "or set dataset.download=true",
    ),
}


def is_default_root(root: str | Path) -> bool:
    """dataset.root left at the schema's default ("data", recorded absolute against the directory
    the command was typed in)."""
    return Path(root).expanduser().absolute() == Path(DatasetConfig.root).absolute()


def candidate_dirs(name: str, root: str | Path) -> list[Path]:
    """The folders searched for the IDX files of `name`, in order."""
    src, root = _SOURCES[name], Path(root).expanduser()
    dirs = [root / src.torchvision_name / "raw", *(root / f for f in src.folders), root]
    if name == "fashion_mnist" and is_default_root(root):
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    src = _SOURCES[name]
    try:
        for train in (True, False):  # fetches all four files into <root>/<torchvision_name>/raw
            getattr(tvd, src.torchvision_name)(str(root), train=train, download=True)
    except Exception as e:  # no internet, a mirror down, ...: still one sentence naming the key
        raise ConfigError(f"dataset.download: fetching {src.human} into {root} failed ({e})") from e


def load_idx_dataset(name: str, root: str | Path, download: bool = False):
    """(arrays from load_idx_split, folder they came from) for mnist / fashion_mnist."""
    root = Path(root).expanduser()
    dirs = candidate_dirs(name, root)
    files = find_idx_dir(dirs)
    if files is None and download:
        _download(name, root)
        files = find_idx_dir(dirs)
    if files is None:
        places = [str(d) for d in dirs]
        where = ", ".join(places[:-1]) + " or " + places[-1]
        src = _SOURCES[name]
        system = ""
        if name == "fashion_mnist" and DEBIAN_FASHION_MNIST not in dirs:
            system = f" (the system copy {DEBIAN_FASHION_MNIST} is searched only when dataset.root is left at its default)"
        raise ConfigError(f"dataset.root: no {src.human} IDX files in {where}{system}; {src.fix}")
    return load_idx_split(files), files["train_images"].parent


def _build(name: str, cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    if cfg.augment:
        raise ConfigError(
            f"dataset.augment: {_SOURCES[name].human} has no augmentation in the papers; set dataset.augment=false"
        )
    arrays, folder = load_idx_dataset(name, cfg.root, cfg.download)

    def images(key: str) -> torch.Tensor:  # (N, 28, 28) uint8 -> (N, 1, 28, 28)
        return torch.from_numpy(arrays[key]).unsqueeze(1)

    def labels(key: str) -> torch.Tensor:
        return torch.from_numpy(arrays[key].astype("int64"))

    return build_tensor_data(
        name,
        images("train_images"),
        labels("train_labels"),
        images("test_images"),
        labels("test_labels"),
        num_classes=10,
        val_fraction=cfg.val_fraction,
        pad=0,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        device=device,
        origin=str(folder),
    )


@DATASETS.register("mnist")
def build_mnist(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    return _build("mnist", cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=device)


@DATASETS.register("fashion_mnist")
def build_fashion_mnist(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    return _build(
        "fashion_mnist", cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=device
    )
