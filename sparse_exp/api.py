"""The Python API: the pieces of a run for a notebook or another program.

    import torch
    from sparse_exp import api

    cfg = api.config("dataset=synthetic", "dataset.shape=[1,28,28]", "trainer.epochs=2")  # the command's overrides
    run = api.build(cfg, model=my_net)              # data, model, method and trainer state of one run
    mask = api.compute_mask(run, "snip", compression=0.9)   # any score: random, magnitude, snip, usnip, grasp, synflow
    api.apply_mask(run, mask)                       # prune (or mode="freeze"); pruned weights stay 0 in training
    result = api.train(run)                         # the run's trainer: history, best epoch, test accuracy
    api.export(run, "pruned.pt", csr=True)          # a plain state dict (export/state_dict.py)

    metrics = api.run(cfg, model=my_net)            # or the whole command in one call (metrics.json's content)

`config` composes exactly what `sparse-exp <overrides>` composes and checks it the same way (one
ConfigError sentence per mistake). `model` is optional everywhere: without it the configured
model (`model=...`, also `model=custom model.target=...`) is built and seeded as on the command
line; a model passed in keeps its weights. Files (TensorBoard, checkpoints) go to `out_dir`, a
fresh temporary folder unless given.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sparse_exp.errors import ConfigError
from sparse_exp.export.compressed import load_compressed
from sparse_exp.export.state_dict import export_state_dict
from sparse_exp.models.base import prunable_parameters
from sparse_exp.models.build import architecture_tag, build_model, init_seed_of
from sparse_exp.sparsity.mask import Mask
from sparse_exp.training.session import Session
from sparse_exp.training.trainer import PhaseResult

__all__ = ["Mask", "Session", "apply_mask", "build", "build_model", "compute_mask", "config", "export",
           "init_seed_of", "load_compressed", "run", "train"]


def config(*overrides: str) -> DictConfig:
    """The run config for command-line style overrides ("method=snip", "trainer.epochs=3", ...)."""
    from sparse_exp.cli import _compose, _register_schemas
    from sparse_exp.config.overrides import check_overrides
    from sparse_exp.config.validate import validate

    _register_schemas()
    message = check_overrides(list(overrides), _compose)
    if message:
        raise ConfigError(message)
    cfg = _compose(list(overrides))
    validate(cfg)
    return cfg


def build(cfg: DictConfig, model: Optional[nn.Module] = None, out_dir: Union[str, Path, None] = None) -> Session:
    """Data, model (built from cfg or the one given), method and tracker of one run, as a Session:
    `run.model`, `run.data`, `run.mask`, `run.params` (the prunable parameters by name)."""
    from sparse_exp.config.validate import resolve_device, validate
    from sparse_exp.experiment import _build_session

    validate(cfg)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="sparse-exp-"))
    out.mkdir(parents=True, exist_ok=True)
    return _build_session(cfg, out, resolve_device(cfg.device), None, True, model)


def compute_mask(run: Session, criterion: str = "snip", compression: Optional[float] = None, **scoring) -> Mask:
    """The mask keeping floor((1 - q) D) prunable weights ranked by `criterion` (q: `compression`, by
    default method.compression). `scoring` sets the scoring options of sparsity/scores/config.py
    (score_batches, budget=global|uniform|erk, ...); the run's method config supplies the rest."""
    from sparse_exp.sparsity.prune import mask_for, validate_scoring
    from sparse_exp.sparsity.scores.config import ScoringConfig

    q = run.cfg.method.compression if compression is None else compression
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"compression must lie in [0, 1] (the fraction q of weights removed); got {q}")
    scfg = OmegaConf.structured(ScoringConfig)
    known = {k: v for k, v in run.cfg.method.items() if k in scfg and k not in ("name", "compression")}
    unknown = sorted(set(scoring) - set(scfg.keys()))
    if unknown:
        raise ConfigError(f"compute_mask: unknown scoring option {unknown[0]}; the options are: {', '.join(scfg.keys())}")
    scfg = OmegaConf.merge(scfg, known, scoring, {"compression": q})
    validate_scoring(scfg, "criterion", criterion)
    with run.timed_mask():
        mask, _ = mask_for(run, criterion, scfg, q)
    return mask


def apply_mask(target: Union[Session, nn.Module], mask: Mask, mode: str = "prune") -> None:
    """Install `mask` on a run (`mode` prune or freeze; training keeps it exact), or zero the pruned
    weights of a plain model."""
    if isinstance(target, Session):
        target.set_mask(mask, mode)
        return
    if mode != "prune":
        raise ConfigError("apply_mask: a plain model can only be pruned; freezing needs a run (api.build)")
    params = prunable_parameters(target)
    mask.check(params)
    with torch.no_grad():
        for name, p in params.items():
            p.mul_(mask.masks[name].to(p.device, p.dtype))


def train(run: Session, epochs: Optional[int] = None, phase: str = "train") -> PhaseResult:
    """Train the run's model under its current mask (trainer.* settings; the method's hooks run,
    so DST and GMP change the mask as they train). Returns the phase's history and accuracies."""
    return run.train(phase, epochs=epochs)


def export(run: Session, path: Union[str, Path], csr: bool = False) -> Path:
    """Write the run's model as a plain state dict with its input normalisation (export/state_dict.py)."""
    return export_state_dict(
        run.model, Path(path), csr=csr, normalization=run.data.normalization,
        model_cfg=OmegaConf.to_container(run.cfg.model, resolve=True), architecture=architecture_tag(run.cfg.model),
        num_classes=run.data.num_classes, input_shape=run.data.input_shape,
    )


def run(cfg: DictConfig, model: Optional[nn.Module] = None, out_dir: Union[str, Path, None] = None) -> dict:
    """The whole command for `cfg`: masks, training, metrics.json, mask, checkpoint and compressed
    model in `out_dir`; returns the metrics."""
    from sparse_exp import experiment

    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="sparse-exp-"))
    return experiment.run(cfg, out, model=model)
