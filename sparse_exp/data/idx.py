"""A small reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw).

We read the files ourselves instead of going through torchvision's processed layout, so the
Debian package's `.gz` files, torchvision's `raw/` folder and a hand-unpacked download all work.

IDX layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
sizes, then the values in C order (big-endian where wider than a byte).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from sparse_exp.errors import ConfigError

# IDX type code -> numpy dtype (big-endian, as the format stores it)
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# the four files of a split, without the optional ".gz"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file; gzip is recognised by content, not by the file name."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ConfigError(f"dataset.root: {path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ConfigError(
            f"dataset.root: {path} is truncated or corrupt ({len(raw) - header} data bytes, header says {expected})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_dir(candidates: list[Path]) -> dict[str, Path] | None:
    """The four IDX files from the first candidate folder that holds all of them (raw preferred over .gz)."""
    for folder in candidates:
        found = {}
        for key, stem in IDX_FILES.items():
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def load_idx_split(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """Read train/test images (N, H, W uint8) and labels (N,), checking shapes agree."""
    arrays = {key: read_idx(p) for key, p in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
            raise ConfigError(
                f"dataset.root: {files[f'{part}_images']} and {files[f'{part}_labels']} do not form an IDX "
                f"image/label pair (shapes {images.shape} {images.dtype} and {labels.shape})"
            )
    return arrays
