"""Training throughput (samples/s) per model and method, and the epoch time it implies, next to the
epoch times the papers report (IP appendix, Table A2: one dense epoch on GTX 1080 Ti GPUs).

Each case runs the framework's own training step (Trainer.train_epoch: the tensor-resident data
path with its augmentation on the run's device, forward, backward, method hooks, mask enforcement,
SGD step) on synthetic data of the dataset's shape, after the method has computed its mask. Blocks
of `--steps` steps are timed (the first block is a warm-up and is dropped; CUDA is synchronised
around every block) and the median block gives samples/s. The implied epoch time is the paper's
training-set size divided by samples/s on this one device; the paper's multi-GPU ImageNet times are
shown with their GPU count.

    python scripts/bench_throughput.py                      # CUDA if present: batch of the paper per model
    python scripts/bench_throughput.py --precision bf16 --channels-last
    python scripts/bench_throughput.py --models vgg16 --methods dense,snip,rigl --batch 256
    python scripts/bench_throughput.py --quick              # VGG-16, dense and SNIP, batch 16, a few steps (CPU: ~1 min)

On the CPU the script pins one thread unless --threads says otherwise (two OpenMP threads
collapse when the other core is busy).
The last line is JSON.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402

import sparse_exp.cli as cli  # noqa: E402
from sparse_exp.config.validate import resolve_device  # noqa: E402
from sparse_exp.data import DATASETS  # noqa: E402
from sparse_exp.models.build import build_model, init_seed_of  # noqa: E402
from sparse_exp.methods import METHODS  # noqa: E402
from sparse_exp.tracking.tensorboard import Tracker  # noqa: E402
from sparse_exp.training.session import Session  # noqa: E402
from sparse_exp.training.trainer import Trainer  # noqa: E402

# model -> dataset, input shape, classes, training samples (the 9/1 split of the training set),
# the paper's batch size, seconds per epoch and GPUs (IP appendix Tables A2/A3; None: not reported)
CASES = {
    "vgg16": ("CIFAR-10", (3, 32, 32), 10, 45_000, 128, 23.7, 1),
    "vgg16_lth": ("CIFAR-10", (3, 32, 32), 10, 45_000, 128, 21.9, 1),
    "resnet18": ("CIFAR-100", (3, 32, 32), 100, 45_000, 128, None, None),
    "resnet18_imagenet": ("ImageNet", (3, 224, 224), 1000, 1_153_050, 512, 2770.5, 8),
    "resnet50": ("ImageNet", (3, 224, 224), 1000, 1_153_050, 128, 4354.2, 2),
    "lenet5": ("MNIST", (1, 28, 28), 10, 54_000, 100, None, None),
}


def build_trainer(model: str, method: str, batch: int, steps: int, args) -> tuple[Trainer, float]:
    _, shape, classes, _, _, _, _ = CASES[model]
    train = batch * steps
    size = math.ceil(train / 0.9) + 2  # the 9/1 split leaves `train` samples for one block
    overrides = [
        "dataset=synthetic", f"dataset.shape=[{','.join(map(str, shape))}]", f"dataset.num_classes={classes}",
        f"dataset.size={size}", "dataset.test_size=2", f"dataset.augment={str(shape[1] == 32).lower()}",
        f"model={model}", f"method={method}", f"sharing={args.sharing}", f"trainer.batch_size={batch}",
        f"trainer.eval_batch_size={batch}", f"trainer.max_steps_per_epoch={steps}", "trainer.epochs=1000000",
        "trainer.log_every=1000000000", "trainer.lr=0.01", f"trainer.precision={args.precision}",
        f"trainer.channels_last={str(args.channels_last).lower()}", f"device={args.device}",
    ]
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    device = resolve_device(cfg.device)
    data = DATASETS.get("synthetic")(cfg.dataset, batch_size=batch, eval_batch_size=batch, seed=0, device=device)
    net = build_model(cfg, data.num_classes, data.input_shape, init_seed_of(cfg)).to(device)
    if args.channels_last and device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    method_obj = METHODS.get(cfg.method.name)(cfg.method)
    out = tempfile.mkdtemp(prefix="bench_throughput_")
    session = Session(cfg, out, device, net, data, method_obj, Tracker(out, enabled=False), init_seed_of(cfg), None,
                      is_writer=False)
    t0 = time.perf_counter()
    method_obj.prepare(session)  # the mask (scores for SNIP/FreezeNet, ERK for SET/RigL); dense: nothing
    mask_s = time.perf_counter() - t0
    return Trainer(session, "bench", epochs=1_000_000), mask_s


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(trainer: Trainer, blocks: int) -> list[float]:
    """Seconds of each timed block of steps (after one warm-up block)."""
    times = []
    for epoch in range(blocks + 1):
        sync(trainer.device)
        t0 = time.perf_counter()
        trainer.train_epoch(epoch)
        sync(trainer.device)
        if epoch:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="VGG-16, dense and SNIP, batch 16, 2 blocks of 2 steps")
    parser.add_argument("--models", default=None, help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--methods", default=None, help="comma-separated method names (default dense,snip,freezenet,rigl)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the paper's per model)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=None, help="timed blocks (after one warm-up block)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    parser.add_argument("--sharing", default="none", help="interspace sharing (none = standard spatial training)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default 1 on the CPU)")
    args = parser.parse_args()
    cuda = resolve_device(args.device).type == "cuda"
    default_models = "vgg16" if args.quick else ("vgg16,vgg16_lth,resnet18,resnet18_imagenet,resnet50" if cuda else "vgg16,resnet18")
    models = (args.models or default_models).split(",")
    methods = (args.methods or ("dense,snip" if args.quick else "dense,snip,freezenet,rigl")).split(",")
    steps = args.steps or (2 if args.quick else (20 if cuda else 3))
    blocks = args.blocks or (2 if args.quick else 3)
    if not cuda:
        torch.set_num_threads(args.threads or 1)
    elif args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    cli._register_schemas()
    for m in models:
        if m not in CASES:
            parser.error(f"--models: unknown model '{m}'; choose from {', '.join(CASES)}")

    results = []
    device_name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device: {device_name}; precision {args.precision}{', channels_last' if args.channels_last and cuda else ''}; "
          f"{blocks} timed blocks of {steps} steps after a warm-up block")
    print(f"{'model':<18} {'method':<10} {'batch':>5} {'samples/s':>10} {'step ms':>9} {'epoch s':>9}   paper (IP Table A2)")
    for model in models:
        dataset, _, _, n_train, paper_batch, paper_s, paper_gpus = CASES[model]
        batch = args.batch or (16 if args.quick else (paper_batch if cuda else 32))
        for method in methods:
            trainer, mask_s = build_trainer(model, method, batch, steps, args)
            times = measure(trainer, blocks)
            block = statistics.median(times)
            sps = batch * steps / block
            epoch_s = n_train / sps
            paper = f"{paper_s} s on {paper_gpus} GTX 1080 Ti, batch {paper_batch}" if paper_s else "-"
            print(f"{model:<18} {method:<10} {batch:>5} {sps:>10.1f} {1000 * block / steps:>9.1f} {epoch_s:>9.1f}   {paper}")
            results.append({
                "model": model, "dataset": dataset, "method": method, "batch": batch, "samples_per_s": round(sps, 2),
                "step_ms": round(1000 * block / steps, 2), "train_samples": n_train, "epoch_s": round(epoch_s, 1),
                "paper_epoch_s": paper_s, "paper_gpus": paper_gpus, "paper_batch": paper_batch, "mask_s": round(mask_s, 3),
            })
            del trainer
            if cuda:
                torch.cuda.empty_cache()
    vgg = next((r for r in results if r["model"] == "vgg16" and r["method"] == "dense"), None)
    summary = {
        "device": device_name, "precision": args.precision, "channels_last": bool(args.channels_last and cuda),
        "steps": steps, "blocks": blocks, "quick": args.quick,
        "vgg16_cifar10_epoch_s": vgg["epoch_s"] if vgg else None, "paper_vgg16_cifar10_epoch_s": 23.7,
        "results": results,
    }
    print(f"VGG-16/CIFAR-10 dense: {summary['vgg16_cifar10_epoch_s']} s per epoch of 45,000 samples here; "
          "the paper: 23.7 s on one GTX 1080 Ti" if vgg else "")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
