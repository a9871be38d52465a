"""CIFAR, Tiny ImageNet and ImageNet loaders on tiny files in the real on-disk formats."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparse_exp.config.schema import DatasetConfig
from sparse_exp.data import DATASETS
from sparse_exp.data.split import split_indices
from sparse_exp.errors import ConfigError

CPU = torch.device("cpu")


def build(name, cfg, batch_size=8, eval_batch_size=8, seed=0):
    return DATASETS.get(name)(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=CPU)


def cfg_for(name, root, augment=True):
    return DatasetConfig(name=name, root=str(root), augment=augment, num_workers=0)


# ---------------------------------------------------------------- CIFAR pickles


def write_cifar_batch(path: Path, n: int, label_key: str, num_classes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: 1024 R, 1024 G, 1024 B values
    labels = rng.integers(0, num_classes, n).tolist()
    entry = {"batch_label": path.name, "data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        entry["coarse_labels"] = [lab // 5 for lab in labels]
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)  # the official files are protocol-2 pickles
    return data, np.asarray(labels)


def write_cifar10(root: Path, per_batch=4, n_test=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = [write_cifar_batch(folder / f"data_batch_{i}", per_batch, "labels", 10, rng) for i in range(1, 6)]
    test = write_cifar_batch(folder / "test_batch", n_test, "labels", 10, rng)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f, protocol=2)
    train = (np.concatenate([d for d, _ in parts]), np.concatenate([lab for _, lab in parts]))
    return train, test


def write_cifar100(root: Path, n_train=20, n_test=6):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train = write_cifar_batch(folder / "train", n_train, "fine_labels", 100, rng)
    test = write_cifar_batch(folder / "test", n_test, "fine_labels", 100, rng)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": []}, f, protocol=2)
    return train, test


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_python_pickles(tmp_path, name):
    (train_x, train_y), (test_x, test_y) = (write_cifar10 if name == "cifar10" else write_cifar100)(tmp_path)
    data = build(name, cfg_for(name, tmp_path))
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (18, 2, 6)
    assert data.input_shape == (3, 32, 32) and data.num_classes == (10 if name == "cifar10" else 100)
    assert data.train.x.dtype == torch.uint8
    # the pickled rows are channel-first: pixel (r, c) of channel k is data[n, k*1024 + r*32 + c]
    (xt, yt), = list(data.test.epoch(0))
    img = torch.from_numpy(test_x).view(-1, 3, 32, 32)
    assert torch.equal(data.test.x, img) and torch.equal(yt, torch.from_numpy(test_y))
    assert data.test.x[2, 1, 5, 7] == test_x[2, 1024 + 5 * 32 + 7]
    # per-channel normalisation from the training split only
    tr_idx, val_idx = split_indices(20, 0.1, seed=0)
    tr = torch.from_numpy(train_x).view(-1, 3, 32, 32)[tr_idx].double() / 255
    mean, std = tr.mean((0, 2, 3)), tr.std((0, 2, 3), unbiased=False)
    expect = ((img.double() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).float()
    torch.testing.assert_close(xt, expect, rtol=1e-5, atol=1e-5)
    assert torch.equal(data.val.y, torch.from_numpy(train_y)[val_idx])
    # augmented training batches: same shapes, seeded, different from the un-augmented images
    xa = torch.cat([x for x, _ in data.train.epoch(0)])
    assert xa.shape == (18, 3, 32, 32) and torch.equal(xa, torch.cat([x for x, _ in data.train.epoch(0)]))
    assert "augment pad 4" in data.description


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_raises_config_error(tmp_path, name, folder):
    with pytest.raises(ConfigError, match="dataset.root") as err:
        build(name, cfg_for(name, tmp_path))
    assert str(tmp_path / folder) in str(err.value) and "dataset.download=true" in str(err.value)


# ---------------------------------------------------------------- image folders


def write_image(path: Path, size: tuple[int, int], value: int, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[0, 0] = value  # a marker to tell images apart
    Image.fromarray(pixels).save(path, format=fmt)


WNIDS = ["n01443537", "n01629819", "n01641577"]


def write_tiny_imagenet(root: Path, per_class=10, val_per_class=2, annotated=True) -> Path:
    base = root / "tiny-imagenet-200"
    for c, wnid in enumerate(WNIDS):  # the original layout: train/<wnid>/images/*.JPEG + boxes file
        for i in range(per_class):
            write_image(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (64, 64), 10 * c + i, "JPEG")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for c, wnid in enumerate(WNIDS):
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            if annotated:
                write_image(base / "val" / "images" / name, (64, 64), 100 + c, "JPEG")
                lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
            else:
                write_image(base / "val" / wnid / name, (64, 64), 100 + c, "JPEG")
    if annotated:
        (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


@pytest.mark.parametrize("annotated", [True, False])
def test_tiny_imagenet_layouts(tmp_path, annotated):
    write_tiny_imagenet(tmp_path, annotated=annotated)
    data = build("tiny_imagenet", cfg_for("tiny_imagenet", tmp_path), batch_size=8, eval_batch_size=4)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (27, 3, 6)
    assert data.num_classes == 3 and data.input_shape == (3, 64, 64)
    xt = [x for x, _ in data.test.epoch(0)]
    yt = torch.cat([y for _, y in data.test.epoch(0)])
    assert [tuple(x.shape) for x in xt] == [(4, 3, 64, 64), (2, 3, 64, 64)]
    assert sorted(yt.tolist()) == [0, 0, 1, 1, 2, 2]  # mapped through the training folder's classes
    batches = list(data.train.epoch(1))
    assert [len(y) for _, y in batches] == [8, 8, 8, 3] and len(data.train) == 4
    assert batches[0][0].shape == (8, 3, 64, 64) and batches[0][0].dtype == torch.float32
    again = list(data.train.epoch(1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    other = list(data.train.epoch(2))
    assert not torch.equal(batches[0][0], other[0][0])


def test_tiny_imagenet_augmentation_does_not_touch_the_global_rng(tmp_path):
    write_tiny_imagenet(tmp_path, per_class=3)
    data = build("tiny_imagenet", cfg_for("tiny_imagenet", tmp_path), batch_size=4)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(data.train.epoch(0))
    assert torch.equal(torch.rand(3), expected)


def test_tiny_imagenet_unaugmented_val_and_score_batches(tmp_path):
    write_tiny_imagenet(tmp_path)
    data = build("tiny_imagenet", cfg_for("tiny_imagenet", tmp_path, augment=False), batch_size=30)
    # without augmentation the training epoch is just a shuffle of the normalised images
    (x, y), = list(data.train.epoch(0))
    batches = data.score_batches(2, 5, [2], torch.Generator().manual_seed(0))
    assert len(batches) == 2 and all(b[0].shape == (5, 3, 64, 64) for b in batches)
    assert all(set(b[1].tolist()) == {2} for b in batches)
    # score images are un-augmented: each equals some (un-augmented) training image
    for img in torch.cat([b[0] for b in batches]):
        assert ((x - img).abs().flatten(1).amax(1) == 0).any()


def test_tiny_imagenet_bad_annotations(tmp_path):
    base = write_tiny_imagenet(tmp_path, per_class=2)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ConfigError, match="n99999999"):
        build("tiny_imagenet", cfg_for("tiny_imagenet", tmp_path))


def write_imagenet(root: Path) -> Path:
    base = root / "imagenet"
    for c, wnid in enumerate(WNIDS):
        for i in range(4):  # varied sizes and formats, like the real JPEGs
            fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "JPEG")
            write_image(base / "train" / wnid / f"{wnid}_{i}.{ext}", (40 + 7 * i, 30 + 5 * c), 10 * c + i, fmt)
        write_image(base / "val" / wnid / f"ILSVRC2012_val_{c}.JPEG", (50, 36), 100 + c, "JPEG")
    return base


def test_imagenet_folders_and_transforms(tmp_path):
    base = write_imagenet(tmp_path)
    data = build("imagenet", cfg_for("imagenet", tmp_path), batch_size=5, eval_batch_size=2)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (11, 1, 3)
    assert data.input_shape == (3, 224, 224) and data.num_classes == 3
    test = list(data.test.epoch(0))
    assert [tuple(x.shape) for x, _ in test] == [(2, 3, 224, 224), (1, 3, 224, 224)]
    assert torch.cat([y for _, y in test]).tolist() == [0, 1, 2]
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (5, 3, 224, 224) and y.dtype == torch.int64
    assert str(base) in data.description and "0.485" in data.description
    # a class in val/ that train/ lacks cannot be labelled
    write_image(base / "val" / "n00000001" / "x.JPEG", (40, 40), 1, "JPEG")
    with pytest.raises(ConfigError, match="n00000001"):
        build("imagenet", cfg_for("imagenet", tmp_path))


@pytest.mark.parametrize("name,sub", [("tiny_imagenet", "tiny-imagenet-200"), ("imagenet", "imagenet")])
def test_missing_folders_raise_config_error(tmp_path, name, sub):
    with pytest.raises(ConfigError, match="dataset.root") as err:
        build(name, cfg_for(name, tmp_path))
    assert str(tmp_path / sub / "train") in str(err.value)


def test_empty_class_folder_raises_config_error(tmp_path):
    base = write_imagenet(tmp_path)
    (base / "train" / "n00000002").mkdir()
    with pytest.raises(ConfigError, match="dataset.root"):
        build("imagenet", cfg_for("imagenet", tmp_path))


@pytest.mark.slow
def test_folder_batches_do_not_depend_on_worker_count(tmp_path):
    write_tiny_imagenet(tmp_path, per_class=4)
    batches = {}
    for workers in (0, 2):
        cfg = DatasetConfig(name="tiny_imagenet", root=str(tmp_path), augment=True, num_workers=workers)
        batches[workers] = list(build("tiny_imagenet", cfg, batch_size=3).train.epoch(7))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches[0], batches[2]))
