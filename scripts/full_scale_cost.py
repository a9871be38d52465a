"""What each paper preset costs at full scale on GPUs: docs/full_scale.md.

For every sweep preset of conf/experiment/ that reproduces a table or figure (not the repro_* CPU-scale
ones), this counts the jobs of its grid, the training epochs of each job (LTH: 1 + the number of pruning
rounds, eq. A.75; FT: pre-training + fine-tuning), the training samples per epoch and the dense model's
forward FLOPs per sample (measure/flops.py), and converts the training arithmetic (3x the forward FLOPs:
forward, input and weight gradients) into GPU-hours at the throughput the IP appendix measured (Table A2:
one VGG-16/CIFAR-10 epoch of 45,000 samples in 23.7 s on one GTX 1080 Ti). Scoring, evaluation and data
loading are not counted, and throughput is assumed to scale with FLOPs, so read the figures as the order
of magnitude of a GTX 1080 Ti; a newer GPU divides them by its speed-up.

    python scripts/full_scale_cost.py            # writes docs/full_scale.md and prints it
"""
from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402

TRAIN_SAMPLES = {"mnist": 54_000, "fashion_mnist": 54_000, "cifar10": 45_000, "cifar100": 45_000,
                 "tiny_imagenet": 90_000, "imagenet": 1_281_167}
REFERENCE = ("vgg16", (3, 32, 32), 10, 45_000, 23.7)  # IP appendix Table A2, GTX 1080 Ti
SKIP_PREFIXES = ("repro_", "a9_", "a10_", "a11_")  # CPU-scale runs and the single-run setup columns


def forward_flops(model: str, shape: tuple, classes: int, cache: dict = {}) -> float:  # noqa: B006 - a memo
    key = (model, shape, classes)
    if key not in cache:
        from sparse_exp.measure.flops import flops_summary
        from sparse_exp.models import MODELS

        net = MODELS.get(model).build(classes, shape)
        cache[key] = float(flops_summary(net, shape, per_layer=False)["dense"])
    return cache[key]


def compose(preset: str):
    from hydra import compose as hydra_compose, initialize_config_module

    import sparse_exp.cli as cli

    cli._register_schemas()
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[f"experiment={preset}"])


def jobs_of(preset_file: Path) -> list[dict]:
    """The override dicts of every job of the preset's sweep (params x each grid)."""
    sweeper = OmegaConf.load(preset_file).get("hydra", {}).get("sweeper", {}) or {}
    params = dict(sweeper.get("params") or {})
    grids = list(sweeper.get("grids") or [{}])
    jobs = []
    for grid in grids:
        combo = {**params, **grid}
        keys = list(combo)
        values = [str(combo[k]).split(",") for k in keys]
        jobs += [dict(zip(keys, v)) for v in itertools.product(*values)]
    return jobs


def trainings(method: str, q: float, cfg) -> float:
    """Epoch multiples of one job: LTH trains 1 + rounds times (eq. A.75), FT pre-trains then fine-tunes."""
    if method == "lth":
        f = float(cfg.method.get("prune_fraction", 0.2))
        return 1 + math.ceil(math.log(1 - q) / math.log(1 - f)) if 0 < q < 1 else 1
    if method == "ft":
        pre = cfg.method.get("pretrain_epochs") or cfg.trainer.epochs
        fine = cfg.method.get("finetune_epochs") or cfg.trainer.epochs
        return (pre + fine) / cfg.trainer.epochs
    return 1.0


def main() -> int:
    ref_model, ref_shape, ref_classes, ref_samples, ref_s = REFERENCE
    flop_rate = 3 * forward_flops(ref_model, ref_shape, ref_classes) * ref_samples / ref_s  # training FLOP/s
    rows = []
    for preset_file in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        name = preset_file.stem
        if name.startswith(SKIP_PREFIXES):
            continue
        cfg = compose(name)
        from sparse_exp.config.validate import INPUT_SHAPES

        jobs = jobs_of(preset_file)
        if cfg.dataset.name not in INPUT_SHAPES or not jobs:
            continue
        gpu_s, epochs = 0.0, 0.0
        for job in jobs:
            if str(job.get("dry_run", "false")).lower() == "true":
                continue
            model = job.get("model", cfg.model.name)
            method = job.get("method", cfg.method.name)
            q = float(job.get("method.compression", cfg.method.get("compression", 0.0)))
            e = float(job.get("trainer.epochs", cfg.trainer.epochs)) * trainings(method, q, cfg)
            classes = 10 if cfg.dataset.name in ("mnist", "fashion_mnist", "cifar10") else \
                100 if cfg.dataset.name == "cifar100" else 200 if cfg.dataset.name == "tiny_imagenet" else 1000
            flops = 3 * forward_flops(model, INPUT_SHAPES[cfg.dataset.name], classes)
            samples = TRAIN_SAMPLES[cfg.dataset.name] * (1 - (cfg.dataset.val_fraction or 0.0))
            gpu_s += e * samples * flops / flop_rate
            epochs += e
        if not epochs:
            continue
        rows.append((name, cfg.dataset.name, cfg.model.name, len(jobs), epochs / len(jobs), gpu_s / 3600))
    lines = [
        "# Full-scale cost of the papers' presets",
        "",
        "Generated by `python scripts/full_scale_cost.py` (see its docstring for the method). GPU-hours of one "
        "GTX 1080 Ti, derived from the IP appendix's measured 23.7 s per VGG-16/CIFAR-10 epoch and each preset's "
        "schedule and grid; training arithmetic only (3x the dense forward FLOPs per sample), so scoring, "
        "evaluation and input pipelines come on top, and ImageNet runs are usually bound by data loading. "
        "Mask-only sweeps (dry runs) cost minutes and are not listed.",
        "",
        "Run a preset as a SLURM job array (one GPU per job, `array_parallelism` jobs at a time):",
        "",
        "```",
        "sparse-exp -m experiment=<preset> hydra/launcher=slurm hydra.launcher.partition=<partition> \\",
        "    hydra.launcher.timeout_min=<minutes per job> hydra.launcher.array_parallelism=<GPUs>",
        "sparse-exp-report multirun/<date>/<time>        # the table and figure of the preset",
        "```",
        "",
        "| preset | dataset | model | jobs | epochs per job | GPU-hours (1080 Ti) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| `{n}` | {d} | {m} | {j} | {e:g} | {h:,.1f} |" for n, d, m, j, e, h in rows]
    text = "\n".join(lines) + "\n"
    out = REPO / "docs" / "full_scale.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
