"""Tiny ImageNet (64x64, 200 classes) and ImageNet ILSVRC2012 (224x224 crops, 1000 classes).

Layouts (torchvision ImageFolder, one subfolder per class):
  <root>/tiny-imagenet-200/train/<wnid>/...  (the original `train/<wnid>/images/*.JPEG` works too)
  <root>/tiny-imagenet-200/val/<wnid>/...    or the original `val/images/*.JPEG` + `val/val_annotations.txt`
  <root>/imagenet/train/<wnid>/*.JPEG
  <root>/imagenet/val/<wnid>/*.JPEG          (the official validation set, used as the test set)
Class indices follow the sorted training folder names; the test folder is mapped through them.
dataset.val_fraction splits the training folder into train/validation with the run seed; both
YAMLs set 0 (the whole folder trains, the final epoch is reported; see conf/dataset/*.yaml).

Normalisation: both use the published ImageNet channel constants mean (0.485, 0.456, 0.406),
std (0.229, 0.224, 0.225) (the usual choice for Tiny ImageNet too, which has no official ones).
Augmentation: Tiny ImageNet as CIFAR (zero-pad 4, random 64x64 crop, random flip; appendix A.3);
ImageNet RandomResizedCrop(224) + flip for training, Resize(256) + CenterCrop(224) for evaluation
(IP appendix H). Tiny ImageNet images that are not 64x64 are resized to 64x64 (a no-op otherwise).
torchvision is imported only when a dataset is built: it costs seconds at every CLI start otherwise.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sparse_exp.data import DATASETS
from sparse_exp.data.base import Data
from sparse_exp.data.folder import Samples, build_folder_data
from sparse_exp.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_NOTES = f"ImageNet mean {IMAGENET_MEAN} std {IMAGENET_STD}"


def tiny_imagenet_transforms():
    """(train, eval) transforms of Tiny ImageNet."""
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    size = T.Resize((64, 64))
    train = T.Compose([size, T.RandomCrop(64, padding=4), T.RandomHorizontalFlip(), *tail])
    return train, T.Compose([size, *tail])


def imagenet_transforms():
    """(train, eval) transforms of ImageNet."""
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *tail])
    return train, T.Compose([T.Resize(256), T.CenterCrop(224), *tail])


def _class_folder_samples(folder: Path, class_to_idx: dict[str, int] | None = None) -> tuple[Samples, dict[str, int]]:
    """ImageFolder samples of `folder`; with class_to_idx, its class folders must be known classes."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, found = find_classes(str(folder))
        if class_to_idx is not None:
            unknown = [c for c in classes if c not in class_to_idx]
            if unknown:
                raise ConfigError(
                    f"dataset.root: {folder} has class folders {unknown[:5]} that the training folder lacks"
                )
            found = {c: class_to_idx[c] for c in classes}
        return make_dataset(str(folder), found, extensions=IMG_EXTENSIONS), found
    except FileNotFoundError as e:  # no class folders, or a class folder without images
        raise ConfigError(f"dataset.root: {folder} is not an image folder with one subfolder per class ({e})") from e


def _annotated_samples(val_dir: Path, class_to_idx: dict[str, int]) -> Samples:
    """Tiny ImageNet's original validation layout: images/ plus val_annotations.txt (file, wnid, box)."""
    samples = []
    for line in (val_dir / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        fname, wnid = line.split("\t")[:2]
        if wnid not in class_to_idx:
            raise ConfigError(f"dataset.root: {val_dir}/val_annotations.txt names class {wnid} that train/ lacks")
        path = val_dir / "images" / fname
        if not path.is_file():
            raise ConfigError(f"dataset.root: {path} is listed in val_annotations.txt but missing")
        samples.append((str(path), class_to_idx[wnid]))
    return samples


def _folders(root, sub: str, human: str, hint: str) -> tuple[Path, Path, Path]:
    base = Path(root).expanduser() / sub
    train, val = base / "train", base / "val"
    if not (train.is_dir() and val.is_dir()):
        raise ConfigError(f"dataset.root: no {human} folders {train} and {val}; {hint}")
    return base, train, val


def load_tiny_imagenet(root) -> tuple[Samples, Samples, int, Path]:
    """(train samples, test samples, number of classes, dataset folder)."""
    base, train_dir, val_dir = _folders(
        root,
        "tiny-imagenet-200",
        "Tiny ImageNet",
        "unpack tiny-imagenet-200.zip into dataset.root or point dataset.root at the folder that holds it",
    )
    train, class_to_idx = _class_folder_samples(train_dir)
    if (val_dir / "val_annotations.txt").is_file():
        test = _annotated_samples(val_dir, class_to_idx)
    else:
        test, _ = _class_folder_samples(val_dir, class_to_idx)
    return train, test, len(class_to_idx), base


def load_imagenet(root) -> tuple[Samples, Samples, int, Path]:
    """(train samples, test samples = the official val set, number of classes, dataset folder)."""
    base, train_dir, val_dir = _folders(
        root,
        "imagenet",
        "ImageNet",
        "put ILSVRC2012 train/ and val/ (one subfolder per class) under dataset.root/imagenet",
    )
    train, class_to_idx = _class_folder_samples(train_dir)
    test, _ = _class_folder_samples(val_dir, class_to_idx)
    return train, test, len(class_to_idx), base


def _normalized(data: Data, eval_tf) -> Data:
    data.normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "preprocess": " ".join(f"{eval_tf} (ToTensor scales pixels to [0, 1])".split())}
    return data


@DATASETS.register("tiny_imagenet")
def build_tiny_imagenet(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    train, test, num_classes, base = load_tiny_imagenet(cfg.root)
    train_tf, eval_tf = tiny_imagenet_transforms()
    return _normalized(build_folder_data(
        "tiny_imagenet", train, test, num_classes=num_classes, input_shape=(3, 64, 64),
        train_transform=train_tf, eval_transform=eval_tf, cfg=cfg, batch_size=batch_size,
        eval_batch_size=eval_batch_size, seed=seed, device=device, origin=str(base), notes=_NOTES,
    ), eval_tf)  # fmt: skip


@DATASETS.register("imagenet")
def build_imagenet(cfg, *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device) -> Data:
    train, test, num_classes, base = load_imagenet(cfg.root)
    train_tf, eval_tf = imagenet_transforms()
    return _normalized(build_folder_data(
        "imagenet", train, test, num_classes=num_classes, input_shape=(3, 224, 224),
        train_transform=train_tf, eval_transform=eval_tf, cfg=cfg, batch_size=batch_size,
        eval_batch_size=eval_batch_size, seed=seed, device=device, origin=str(base), notes=_NOTES,
    ), eval_tf)  # fmt: skip
