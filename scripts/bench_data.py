#!/usr/bin/env python
"""Training throughput with the tensor-resident data source vs torchvision's DataLoader + PIL.

Trains LeNet-300-100 (Table A.1) with SGD on real Fashion-MNIST for the same number of samples,
fed (a) by sparse_exp's tensor-resident source (uint8 tensor, seeded permutation, batched
normalisation) and (b) by `torchvision.datasets.FashionMNIST` + `ToTensor()` + `Normalize` through a
`DataLoader` (num_workers=0; one PIL image per sample, the standard pipeline). One thread, one
process; the two are measured alternately for several rounds and the best round of each is
reported, so background load hits both. The last line printed is one JSON object.

    .venv/bin/python scripts/bench_data.py            # 3 rounds of one epoch (54,000 samples) each
    .venv/bin/python scripts/bench_data.py --quick    # 2 rounds of 60 steps
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from sparse_exp.config.schema import DatasetConfig
from sparse_exp.data import DATASETS
from sparse_exp.data.idx import IDX_FILES
from sparse_exp.data.mnist import load_idx_dataset
from sparse_exp.data.split import split_indices

BATCH = 100


def lenet300() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights for both feeds
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def train(batches, steps: int, do_train: bool = True) -> tuple[int, float]:
    """(samples, seconds) for `steps` SGD steps (or just fetching the batches) from an iterable."""
    model = lenet300()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(batches):
        if step == steps:
            break
        if do_train:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        seen += len(y)
    return seen, time.perf_counter() - start


def torchvision_loader(files_dir: Path, tmp: Path, train_idx: torch.Tensor, mean: float, std: float, epoch: int):
    """The standard pipeline: torchvision's FashionMNIST (one PIL image per sample) in a DataLoader."""
    raw = tmp / "FashionMNIST" / "raw"  # torchvision's expected layout: the unpacked IDX files
    if not raw.is_dir():
        raw.mkdir(parents=True)
        for name in IDX_FILES.values():
            src = files_dir / name if (files_dir / name).is_file() else files_dir / (name + ".gz")
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, open(raw / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    ds = Subset(datasets.FashionMNIST(str(tmp), train=True, transform=tf), train_idx.tolist())
    order = torch.Generator().manual_seed(epoch)
    return DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=0, generator=order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 60 steps instead of 3 full epochs")
    parser.add_argument("--root", default="data", help="dataset.root (the Debian package's files are found anyway)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # PIL's mode= in torchvision
    torch.set_num_threads(1)
    rounds, steps = (2, 60) if args.quick else (3, 540)

    cfg = DatasetConfig(name="fashion_mnist", root=args.root, augment=False)
    build = DATASETS.get("fashion_mnist")
    data = build(cfg, batch_size=BATCH, eval_batch_size=1000, seed=0, device=torch.device("cpu"))
    _, files_dir = load_idx_dataset("fashion_mnist", args.root)
    train_idx, _ = split_indices(data.train.num_samples + data.val.num_samples, cfg.val_fraction, seed=0)
    mean, std = float(data.train.mean[0]), float(data.train.std[0])  # the same normalisation for both

    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        feeds = {
            "tensor": lambda e: data.train.epoch(e),
            "dataloader": lambda e: torchvision_loader(files_dir, Path(tmp), train_idx, mean, std, e),
        }
        for name, feed in feeds.items():  # warm-up: allocator, PIL, first-touch of the tensors
            train(feed(99), 5)
        for r in range(rounds):
            order = list(feeds) if r % 2 == 0 else list(feeds)[::-1]
            for name in order:
                for mode, do_train in (("train", True), ("data only", False)):
                    n, sec = train(feeds[name](r), steps, do_train)
                    key = f"{name}/{mode}"
                    best[key] = max(best.get(key, 0.0), n / sec)
                    line = f"round {r}: {name:10s} {mode:9s} {n:6d} samples {sec:7.3f} s {n / sec:10.0f} samples/s"
                    print(line, flush=True)

    ratio = best["tensor/train"] / best["dataloader/train"]
    print()
    print(f"{'feed (LeNet-300-100, batch 100, 1 thread)':44s} {'train samples/s':>16s} {'data-only samples/s':>20s}")
    for name, label in (("tensor", "tensor-resident (sparse_exp)"), ("dataloader", "torchvision DataLoader + PIL")):
        print(f"{label:44s} {best[name + '/train']:16.0f} {best[name + '/data only']:20.0f}")
    data_ratio = best["tensor/data only"] / best["dataloader/data only"]
    print(f"{'ratio tensor / dataloader':44s} {ratio:16.2f} {data_ratio:20.1f}")
    print(json.dumps({
        "tensor_samples_per_s": round(best["tensor/train"], 1),
        "dataloader_samples_per_s": round(best["dataloader/train"], 1),
        "ratio": round(ratio, 2),
        "data_only_tensor_samples_per_s": round(best["tensor/data only"], 1),
        "data_only_dataloader_samples_per_s": round(best["dataloader/data only"], 1),
        "samples_per_measurement": steps * BATCH,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
