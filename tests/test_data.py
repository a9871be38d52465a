"""Data package: IDX reader, 9/1 split, batched augmentation, tensor sources, MNIST family, synthetic."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf

import sparse_exp.data.mnist as mnist_module
from sparse_exp.config.schema import DatasetConfig
from sparse_exp.data import DATASETS
from sparse_exp.data.augment import draw_pad_crop_flip, pad_crop_flip
from sparse_exp.data.idx import read_idx
from sparse_exp.data.split import split_indices
from sparse_exp.data.synthetic import SyntheticConfig
from sparse_exp.errors import ConfigError
from sparse_exp.seeding import generator

CPU = torch.device("cpu")
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def write_mnist(folder: Path, n_train=100, n_test=20, gz=True, seed=0) -> dict[str, np.ndarray]:
    """Tiny MNIST-format files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr, gz)
    return arrays


def build(name, cfg, batch_size=32, eval_batch_size=16, seed=0):
    return DATASETS.get(name)(cfg, batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=CPU)


def synthetic_cfg(**kw):
    return OmegaConf.structured(SyntheticConfig(**kw))


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gz_and_raw(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr, gz)
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ConfigError, match="dataset.root.*magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((3, 2), np.uint8), gz=False)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-1])
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(tmp_path / "short")


# ---------------------------------------------------------------- split


def test_split_is_seeded_disjoint_and_nine_to_one():
    tr, va = split_indices(100, 0.1, seed=0)
    assert len(tr) == 90 and len(va) == 10
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(100))
    tr2, va2 = split_indices(100, 0.1, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert not torch.equal(va, split_indices(100, 0.1, seed=1)[1])
    assert len(split_indices(60000, 0.1, seed=3)[1]) == 6000


@pytest.mark.parametrize("fraction", [1.0, -0.1, 0.001])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError, match="dataset.val_fraction"):
        split_indices(100, fraction, seed=0)


# ---------------------------------------------------------------- augmentation


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_pad_crop_flip_equals_torchvision(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 3, 10, 12, generator=g) * 255).to(dtype)  # non-square catches row/column mixups
    offsets = torch.tensor([[0, 0], [8, 8], [0, 8], [8, 0], [3, 5], [4, 4], [1, 7], [6, 2]])
    flips = torch.tensor([False, True, False, True, True, False, True, False])
    out = pad_crop_flip(x, offsets, flips, pad=4)
    for i in range(len(x)):
        ref = TF.crop(TF.pad(x[i], [4]), int(offsets[i, 0]), int(offsets[i, 1]), 10, 12)
        if flips[i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], ref), i


def test_draw_pad_crop_flip_is_seeded_and_in_range():
    a = draw_pad_crop_flip(1000, 4, generator(0, "augment", 0))
    b = draw_pad_crop_flip(1000, 4, generator(0, "augment", 0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].min() == 0 and a[0].max() == 8
    assert 400 < a[1].sum() < 600


# ---------------------------------------------------------------- MNIST family on tiny IDX files


def test_tiny_mnist_sizes_batches_and_normalisation(tmp_path):
    arrays = write_mnist(tmp_path / "MNIST" / "raw")
    data = build("mnist", DatasetConfig(name="mnist", root=str(tmp_path), augment=False))
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (90, 10, 20)
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert "mnist: 90 train / 10 val / 20 test" in data.description
    sizes = [len(y) for _, y in data.train.epoch(0)]
    assert sizes == [32, 32, 26] and len(data.train) == 3  # the last partial batch is kept
    # validation = the split's held-out images, in file order, normalised with training statistics
    _, val_idx = split_indices(100, 0.1, seed=0)
    (xv, yv), = list(data.val.epoch(0))
    raw = torch.from_numpy(arrays["train-images-idx3-ubyte"])[val_idx].float() / 255
    train_idx = split_indices(100, 0.1, seed=0)[0]
    tr = torch.from_numpy(arrays["train-images-idx3-ubyte"])[train_idx].double() / 255
    mean, std = tr.mean(), tr.std(unbiased=False)
    torch.testing.assert_close(xv[:, 0], ((raw - mean) / std).float(), rtol=1e-5, atol=1e-5)
    assert torch.equal(yv, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64))[val_idx])
    assert xv.dtype == torch.float32 and yv.dtype == torch.int64
    assert [len(y) for _, y in data.test.epoch(0)] == [16, 4]


def test_train_epoch_is_a_permutation_of_the_training_split(tmp_path):
    write_mnist(tmp_path, gz=False)
    data = build("mnist", DatasetConfig(name="mnist", root=str(tmp_path), augment=False))
    xs = torch.cat([x for x, _ in data.train.epoch(5)])
    ref = data.train.normalize(data.train.x)
    assert xs.shape == ref.shape
    key = lambda t: sorted(t.flatten(1).sum(1).tolist())  # noqa: E731
    assert key(xs) == pytest.approx(key(ref))
    assert not torch.equal(xs, ref)  # shuffled


def test_idx_search_order(tmp_path):
    write_mnist(tmp_path, seed=1)  # <root>/ itself: searched last
    preferred = write_mnist(tmp_path / "fashion-mnist", seed=2)
    monkey_dirs = mnist_module.candidate_dirs("fashion_mnist", tmp_path)
    assert monkey_dirs[:4] == [
        tmp_path / "FashionMNIST" / "raw",
        tmp_path / "fashion_mnist",
        tmp_path / "fashion-mnist",
        tmp_path,
    ]
    arrays, folder = mnist_module.load_idx_dataset("fashion_mnist", tmp_path)
    assert folder == tmp_path / "fashion-mnist"
    np.testing.assert_array_equal(arrays["test_labels"], preferred["t10k-labels-idx1-ubyte"])


def test_missing_idx_files_raise_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    for name in ("mnist", "fashion_mnist"):
        with pytest.raises(ConfigError, match="dataset.root") as err:
            build(name, DatasetConfig(name=name, root=str(tmp_path / "empty"), augment=False))
        msg = str(err.value)
        assert str(tmp_path / "empty") in msg and "dataset.download=true" in msg and msg.count(". ") == 0
    assert "no-debian" in msg and "dataset-fashion-mnist" in msg


def test_mnist_refuses_augmentation(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ConfigError, match="dataset.augment"):
        build("mnist", DatasetConfig(name="mnist", root=str(tmp_path), augment=True))


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(), reason="Debian Fashion-MNIST absent")
def test_real_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default root ("data") holds nothing: the system copy is used
    cfg = DatasetConfig(name="fashion_mnist", root=str(tmp_path / "data"), augment=False)
    data = build("fashion_mnist", cfg, batch_size=100, eval_batch_size=1000)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (54000, 6000, 10000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.train.x.dtype == torch.uint8  # stored as in the files
    x, y = next(iter(data.train.epoch(0)))
    assert x.shape == (100, 1, 28, 28) and y.shape == (100,)
    assert str(DEBIAN) in data.description and "mean 0.286 std 0.353" in data.description
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


# ---------------------------------------------------------------- determinism (synthetic, augmented)


def test_epochs_are_repeatable_and_differ(tmp_path):
    cfg = synthetic_cfg(shape=[3, 8, 8], size=60, test_size=10, augment=True)
    data = build("synthetic", cfg, batch_size=16)
    first = list(data.train.epoch(3))
    again = list(data.train.epoch(3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other = list(data.train.epoch(4))
    assert not torch.equal(first[0][0], other[0][0])
    # a fresh build (a resumed run) yields the same epoch without replaying the earlier ones
    fresh = list(build("synthetic", cfg, batch_size=16).train.epoch(3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, fresh))
    # augmentation touches training batches only; validation is the plain normalised split
    (xv, _), = list(data.val.epoch(0))
    assert torch.equal(xv, data.val.normalize(data.val.x))


def test_augmented_epoch_equals_manual_pipeline():
    cfg = synthetic_cfg(shape=[3, 8, 8], size=40, test_size=4, augment=True)
    data = build("synthetic", cfg, batch_size=40)
    src = data.train
    order = torch.randperm(src.num_samples, generator=generator(0, "order", 2))
    offsets, flips = draw_pad_crop_flip(src.num_samples, 4, generator(0, "augment", 2))
    (x, y), = list(src.epoch(2))
    assert torch.equal(y, src.y[order])
    assert torch.equal(x, src.normalize(pad_crop_flip(src.x[order], offsets, flips, 4)))


# ---------------------------------------------------------------- synthetic


def test_synthetic_follows_config_and_is_the_same_for_every_run_seed():
    cfg = synthetic_cfg(shape=[1, 8, 6], num_classes=4, size=50, test_size=10)
    a, b = build("synthetic", cfg, seed=0), build("synthetic", cfg, seed=1)
    assert a.input_shape == (1, 8, 6) and a.num_classes == 4
    assert (a.train.num_samples, a.val.num_samples, a.test.num_samples) == (45, 5, 10)
    assert torch.equal(a.test.x, b.test.x)  # same data ...
    assert not torch.equal(a.val.x, b.val.x)  # ... split by the run seed
    all_a = torch.cat([a.train.x, a.val.x]).flatten(1).sum(1).sort().values
    all_b = torch.cat([b.train.x, b.val.x]).flatten(1).sum(1).sort().values
    assert torch.equal(all_a, all_b)
    x, y = next(iter(a.train.epoch(0)))
    assert x.shape[1:] == (1, 8, 6) and int(y.max()) < 4


def test_synthetic_rejects_bad_shape():
    with pytest.raises(ConfigError, match="dataset.shape"):
        build("synthetic", synthetic_cfg(shape=[8, 8]))


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    data = build("synthetic", synthetic_cfg(shape=[1, 8, 8], num_classes=4, size=400), batch_size=20)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def accuracy():
        with torch.no_grad():
            return sum((model(x).argmax(1) == y).sum().item() for x, y in data.val.epoch(0)) / data.val.num_samples

    before = accuracy()
    for x, y in data.train.epoch(0):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert accuracy() > max(0.9, before + 0.3)


# ---------------------------------------------------------------- scoring batches


def test_score_batches_respect_count_size_and_classes():
    data = build("synthetic", synthetic_cfg(shape=[1, 4, 4], num_classes=5, size=500))
    batches = data.score_batches(3, 20, [1, 3], torch.Generator().manual_seed(0))
    assert len(batches) == 3 and all(x.shape == (20, 1, 4, 4) for x, _ in batches)
    labels = torch.cat([y for _, y in batches])
    assert set(labels.tolist()) <= {1, 3}
    rows = torch.cat([x for x, _ in batches]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 60  # no sample drawn twice across the batches
    again = data.score_batches(3, 20, [1, 3], torch.Generator().manual_seed(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    # un-augmented, normalised training samples
    train_rows = data.train.normalize(data.train.x).flatten(1)
    assert all((train_rows == r).all(1).any() for r in rows[:5])
    # more than the pool: repeats only after every eligible sample was used
    many = data.score_batches(2, data.train.num_samples, None, torch.Generator().manual_seed(1))
    assert len(torch.unique(many[0][0].flatten(1), dim=0)) == data.train.num_samples
    with pytest.raises(ValueError, match="no training samples"):
        data.score_batches(1, 4, [7], torch.Generator())


# ---------------------------------------------------------------- registry and YAML


def test_every_dataset_is_registered_and_has_a_yaml():
    from hydra import compose, initialize_config_module

    names = ["cifar10", "cifar100", "fashion_mnist", "imagenet", "mnist", "synthetic", "tiny_imagenet"]
    assert DATASETS.names() == sorted([*names, "custom"])  # custom: the user's data, tests/test_custom.py
    augment = {"mnist": False, "fashion_mnist": False, "synthetic": False}
    with initialize_config_module("sparse_exp.conf", version_base="1.3"):
        for name in names:
            cfg = compose(overrides=[f"+dataset={name}"]).dataset
            assert cfg.name == name and cfg.augment == augment.get(name, True), name
            assert OmegaConf.get_type(cfg) is (SyntheticConfig if name == "synthetic" else DatasetConfig)
        cfg = compose(overrides=["+dataset=synthetic", "dataset.shape=[1,28,28]", "dataset.num_classes=3"]).dataset
        assert build("synthetic", cfg).input_shape == (1, 28, 28)
