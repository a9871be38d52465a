"""Typed schemas of the config groups.

Each group has a base dataclass here; a registry entry that needs extra keys (a method, the
synthetic dataset, ...) subclasses the base in its own module and registers the subclass with
`register_schema`. The group's YAML file extends that schema (`defaults: [/schema/<group>/<name>@_here_]`),
so Hydra type-checks every override and rejects unknown keys before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


def register_schema(group: str, name: str):
    """Class decorator: store a dataclass as the schema `schema/<group>/<name>` in Hydra's ConfigStore."""

    def add(cls):
        ConfigStore.instance().store(group=f"schema/{group}", name=name, node=cls)
        return cls

    return add


@register_schema("dataset", "base")
@dataclass
class DatasetConfig:
    name: str = "fashion_mnist"
    root: str = "data"  # resolved against the invocation directory and recorded as absolute
    download: bool = False  # let torchvision fetch MNIST/Fashion-MNIST/CIFAR (needs internet)
    val_fraction: float = 0.1  # the papers' seeded 9/1 train/validation split
    augment: bool = False  # the paper augmentation of the dataset (CIFAR, Tiny ImageNet, ImageNet YAMLs set it)
    num_workers: int = 2  # DataLoader workers for the folder datasets (Tiny ImageNet, ImageNet)


@register_schema("model", "base")
@dataclass
class ModelConfig:
    name: str = "lenet5"
    pretrained: Optional[str] = None  # weights to start from: a run dir or a .pt file (models/pretrained.py)
    pretrained_architecture: Optional[str] = None  # what an untagged weights file holds, when names and shapes cannot tell


@register_schema("init", "base")
@dataclass
class InitConfig:
    name: str = "xavier_normal"
    weights: str = "xavier_normal"  # scheme for conv/linear weights (interspace: the spatial filters)
    basis: str = "standard"  # filter-basis initialisation of Algorithm 5.1: standard | onb | random


@register_schema("sharing", "base")
@dataclass
class SharingConfig:
    name: str = "none"  # none (standard spatial training) | coarse | medium | fine | in_nc | out_nc
    nc: int = 1  # channels per basis for in_nc / out_nc (section 5.5.3.3)
    dict_size: Optional[int] = None  # n#, elements of the filter dictionary; None means K^2 (a basis)
    basis_weight_decay: bool = False  # weight decay on the bases too (appendix B.3)


@register_schema("trainer", "base")
@dataclass
class TrainerConfig:
    name: str = "demo"
    epochs: int = 3
    batch_size: int = 100
    eval_batch_size: int = 1000
    optimizer: str = "sgd"  # sgd | adam | adamw (training/optim.py)
    lr: float = 0.1
    momentum: float = 0.9  # SGD
    nesterov: bool = False  # SGD
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam, AdamW
    eps: float = 1e-8  # Adam, AdamW
    weight_decay: float = 5e-4  # L2 for SGD and Adam, decoupled for AdamW
    batchnorm_weight_decay: bool = True  # decay BatchNorm weights/biases too (false: ITOP's, Gale et al.'s ImageNet code)
    bias_weight_decay: bool = True  # decay the biases of conv/linear layers too
    lr_gamma: float = 0.1  # multiplicative LR decay
    lr_every_iters: Optional[int] = None  # decay every N iterations (Tables A.9-A.11, "every 30k iterations")
    lr_milestones: list[int] = field(default_factory=list)  # or at these epochs ("epochs 30/60/80")
    lr_schedule: str = "step"  # step (gamma at milestones / every N iterations) | cosine (training/schedule.py)
    lr_min: float = 0.0  # cosine: the rate the cosine ends on
    warmup_epochs: float = 0.0  # linear warm-up, per iteration (both schedules)
    label_smoothing: float = 0.0
    log_every: int = 50  # steps between progress/TensorBoard scalars (no host sync in between)
    progress_every_s: float = 30.0  # a progress line in the log this often (a live bar on a terminal)
    max_steps_per_epoch: Optional[int] = None  # cut epochs short (smoke tests, benchmarks)
    threads: Optional[int] = None  # torch.set_num_threads; None keeps torch's default
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; CUDA only for fp16)
    channels_last: bool = False
    sync_bn: bool = False
    # Mid-epoch checkpoints (every epoch ends with one anyway): every N steps and/or every M minutes.
    checkpoint_every_steps: Optional[int] = None
    checkpoint_every_min: Optional[float] = None
    # auto | on | off: pruned layers train on CSR kernels where that was measured faster (sparse_exp/kernels)
    sparse_kernels: str = "auto"


@register_schema("method", "base")
@dataclass
class MethodConfig:
    name: str = "dense"
    compression: float = 0.0  # q: fraction of prunable weights removed (or frozen)
    # q counts the filter bases too: kept coefficients + bases = floor((1 - q)(D + B)), so IP pays for
    # its bases out of the budget (Fig. 5.10; IP appendix footnote A.3). No effect on spatial models.
    count_bases: bool = False


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dry_run: bool = False
    resume: Optional[str] = None  # a run dir to continue
    tags: list[str] = field(default_factory=list)


ConfigStore.instance().store(name="config_schema", node=Config)
