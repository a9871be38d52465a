"""Checks that types alone cannot express. Each failure is one ConfigError sentence naming the key.

Types, unknown keys and unknown group options are already rejected by Hydra against the schemas;
this module checks ranges, registry names set through `<group>.name=...`, the device, and whether
the model fits the dataset.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from sparse_exp.config.target import import_target
from sparse_exp.errors import ConfigError
from sparse_exp.kernels.plan import MODES as KERNEL_MODES
from sparse_exp.registry import UnknownName

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("step", "cosine")
BASIS_INITS = ("standard", "onb", "random")


def _registry_name(registry, key: str, name: str) -> None:
    try:
        registry.get(name)
    except UnknownName as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg) -> None:
    from sparse_exp.data import DATASETS
    from sparse_exp.layers.sharing import SHARING_SCHEMES
    from sparse_exp.methods import METHODS
    from sparse_exp.models import MODELS
    from sparse_exp.models.init import INITS

    _registry_name(DATASETS, "dataset.name", cfg.dataset.name)
    _registry_name(MODELS, "model.name", cfg.model.name)
    _registry_name(METHODS, "method.name", cfg.method.name)
    _registry_name(INITS, "init.weights", cfg.init.weights)
    _check(cfg.init.basis in BASIS_INITS, f"init.basis must be one of {', '.join(BASIS_INITS)}; got '{cfg.init.basis}'")
    _registry_name(SHARING_SCHEMES, "sharing.name", cfg.sharing.name)
    for group in ("model", "dataset"):  # model=custom / dataset=custom: the callable must import
        if "target" in cfg[group]:
            import_target(cfg[group].target, f"{group}.target")
    if cfg.model.pretrained:
        from sparse_exp.models.pretrained import checkpoint_file

        _check(checkpoint_file(cfg.model.pretrained).is_file(),
               f"model.pretrained: '{cfg.model.pretrained}' is neither a weights file nor a run directory with checkpoint.pt")

    d = cfg.dataset
    _check(0.0 <= d.val_fraction < 1.0, f"dataset.val_fraction must lie in [0, 1); got {d.val_fraction}")
    _check(d.num_workers >= 0, f"dataset.num_workers must be >= 0; got {d.num_workers}")

    t = cfg.trainer
    _check(t.epochs >= 1, f"trainer.epochs must be >= 1; got {t.epochs}")
    _check(t.batch_size >= 1, f"trainer.batch_size must be >= 1; got {t.batch_size}")
    _check(t.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1; got {t.eval_batch_size}")
    _check(t.lr > 0, f"trainer.lr must be > 0; got {t.lr}")
    _check(0.0 <= t.momentum < 1.0, f"trainer.momentum must lie in [0, 1); got {t.momentum}")
    _check(t.weight_decay >= 0, f"trainer.weight_decay must be >= 0; got {t.weight_decay}")
    _check(0.0 < t.lr_gamma <= 1.0, f"trainer.lr_gamma must lie in (0, 1]; got {t.lr_gamma}")
    _check(t.lr_every_iters is None or t.lr_every_iters >= 1, f"trainer.lr_every_iters must be >= 1 or null; got {t.lr_every_iters}")
    _check(all(m >= 1 for m in t.lr_milestones), f"trainer.lr_milestones must be epochs >= 1; got {list(t.lr_milestones)}")
    _check(t.optimizer in OPTIMIZERS, f"trainer.optimizer must be one of {', '.join(OPTIMIZERS)}; got '{t.optimizer}'")
    _check(len(t.betas) == 2 and all(0.0 <= b < 1.0 for b in t.betas),
           f"trainer.betas must be two numbers in [0, 1) (Adam's beta1, beta2); got {list(t.betas)}")
    _check(t.eps > 0, f"trainer.eps must be > 0; got {t.eps}")
    _check(t.lr_schedule in LR_SCHEDULES, f"trainer.lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got '{t.lr_schedule}'")
    if t.lr_schedule == "cosine":
        _check(not t.lr_milestones and t.lr_every_iters is None,
               "trainer.lr_schedule=cosine decays the rate itself; also set trainer.lr_milestones=[] and "
               f"trainer.lr_every_iters=null (trainer={t.name} decays in steps)")
        _check(0.0 <= t.lr_min <= t.lr, f"trainer.lr_min must lie in [0, trainer.lr]; got {t.lr_min}")
    _check(t.warmup_epochs >= 0, f"trainer.warmup_epochs must be >= 0; got {t.warmup_epochs}")
    _check(0.0 <= t.label_smoothing < 1.0, f"trainer.label_smoothing must lie in [0, 1); got {t.label_smoothing}")
    _check(t.progress_every_s > 0, f"trainer.progress_every_s must be > 0; got {t.progress_every_s}")
    _check(t.log_every >= 1, f"trainer.log_every must be >= 1; got {t.log_every}")
    _check(t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1,
           f"trainer.max_steps_per_epoch must be >= 1 or null; got {t.max_steps_per_epoch}")
    _check(t.threads is None or t.threads >= 1, f"trainer.threads must be >= 1 or null; got {t.threads}")
    _check(t.checkpoint_every_steps is None or t.checkpoint_every_steps >= 1,
           f"trainer.checkpoint_every_steps must be >= 1 or null; got {t.checkpoint_every_steps}")
    _check(t.checkpoint_every_min is None or t.checkpoint_every_min > 0,
           f"trainer.checkpoint_every_min must be > 0 or null; got {t.checkpoint_every_min}")
    _check(t.precision in PRECISIONS, f"trainer.precision must be one of {', '.join(PRECISIONS)}; got '{t.precision}'")
    _check(t.sparse_kernels in KERNEL_MODES,
           f"trainer.sparse_kernels must be one of {', '.join(KERNEL_MODES)}; got '{t.sparse_kernels}'")
    _check(t.sparse_kernels != "on" or t.precision == "fp32",
           f"trainer.sparse_kernels=on needs trainer.precision=fp32 (the CSR products are fp32); got {t.precision}, use auto or off")

    _check(0 <= cfg.seed < 2**63, f"seed must be a non-negative integer; got {cfg.seed}")
    resolve_device(cfg.device)
    if t.precision == "fp16":
        _check(resolve_device(cfg.device).type == "cuda", "trainer.precision=fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    if t.sync_bn:
        _check(resolve_device(cfg.device).type == "cuda",
               "trainer.sync_bn=true needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); use trainer.sync_bn=false on the CPU")
    if cfg.resume:
        _check(Path(cfg.resume).is_dir(), f"resume: '{cfg.resume}' is not a run directory")

    SHARING_SCHEMES.get(cfg.sharing.name).validate(cfg.sharing)
    METHODS.get(cfg.method.name).validate(cfg.method, cfg)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but only {torch.cuda.device_count()} CUDA devices exist")
        return dev
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got '{name}'")


# (C, H, W) of each dataset's inputs, known before any file is read (the sweeper checks every job of a
# sweep with it before launching the first); the loaded Data checks the same again (validate_model_fits).
INPUT_SHAPES = {
    "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
    "tiny_imagenet": (3, 64, 64), "imagenet": (3, 224, 224),
}


def validate_model_fits_statically(cfg) -> None:
    """validate_model_fits without loading the data, for the datasets whose input shape is fixed."""
    d = cfg.dataset
    shape = INPUT_SHAPES.get(d.name) or (tuple(d.shape) if "shape" in d else None)
    if shape is not None:
        validate_model_fits(cfg, shape)


def validate_model_fits(cfg, input_shape) -> None:
    from sparse_exp.models import MODELS

    spec = MODELS.get(cfg.model.name)
    shape = tuple(int(s) for s in input_shape)
    if spec.input_shapes and shape not in spec.input_shapes:  # none listed (model=custom): any shape
        allowed = " or ".join("x".join(map(str, s)) for s in spec.input_shapes)
        raise ConfigError(
            f"model={cfg.model.name} ({spec.table}) takes {allowed} inputs but dataset={cfg.dataset.name} "
            f"gives {'x'.join(map(str, shape))}; pick a matching model or dataset"
        )


def config_warnings(cfg) -> list[str]:
    """Settings that run but do less than they say (logged as warnings before training)."""
    out = []
    if cfg.sharing.name == "none" and cfg.init.name in BASIS_INITS:
        out.append(
            f"init={cfg.init.name} is an interspace initialisation but sharing=none: no basis is drawn and the "
            f"spatial weights are {cfg.init.weights} (as init={cfg.init.weights}); set sharing=coarse|medium|fine|in_nc|out_nc "
            "for interspace pruning"
        )
    return out
