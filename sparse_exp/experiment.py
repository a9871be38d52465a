"""Build the pieces of one run from the registries and run them; returns the metrics.

config -> data + model -> method (masks) -> trainer -> logs / metrics.json / mask / export.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from sparse_exp import distributed
from sparse_exp.config.validate import config_warnings, resolve_device, validate, validate_model_fits
from sparse_exp.data import DATASETS
from sparse_exp.export import COMPRESSED, export_run
from sparse_exp.measure.run_metrics import attach_measurements
from sparse_exp.methods import METHODS
from sparse_exp.models import MODELS
from sparse_exp.models.init import initialise
from sparse_exp.runinfo import run_info
from sparse_exp.seeding import derive_seed
from sparse_exp.tracking.files import load_torch, read_json, write_json
from sparse_exp.tracking.metrics import build_metrics, failure_record, hparams_of
from sparse_exp.tracking.tensorboard import Tracker
from sparse_exp.training.session import CHECKPOINT, Session

log = logging.getLogger("sparse_exp")


def init_seed_of(cfg) -> int:
    """The 32-bit seed the weights are drawn from (all FreezeNet needs to store for frozen weights)."""
    return derive_seed(cfg.seed, "init") & 0xFFFFFFFF


def build_model(cfg, num_classes: int, input_shape: tuple[int, int, int], init_seed: int) -> torch.nn.Module:
    """The architecture of the tables, initialised from `init_seed` alone (on CPU, device-independent)."""
    spec = MODELS.get(cfg.model.name)
    model = spec.build(num_classes, tuple(input_shape))
    if cfg.sharing.name != "none":
        from sparse_exp.layers.interspace import to_interspace

        to_interspace(model, cfg.sharing, cfg.init)
    initialise(model, cfg.init.weights, init_seed)
    return model


def method_config(cfg: DictConfig, model: torch.nn.Module):
    """cfg.method, with method.count_bases=true turned into the coefficient compression that keeps
    floor((1 - q)(D + B)) - B coefficients (Fig. 5.10, IP appendix footnote A.3), so every method
    (one-shot, DST, GMP, LTH, FT) spends the same budget without knowing about bases."""
    from sparse_exp.measure.storage import basis_parameters, coefficient_q, kept_with_bases
    from sparse_exp.models.base import prunable_parameters

    bases = basis_parameters(model)
    if not cfg.method.get("count_bases", False) or bases == 0:
        return cfg.method
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    kept = kept_with_bases(cfg.method.compression, prunable, bases)
    method_cfg = copy.deepcopy(cfg.method)
    method_cfg.compression = coefficient_q(kept, prunable)
    log.info(f"method.count_bases: q = {cfg.method.compression} over {prunable:,} coefficients + {bases:,} basis "
             f"parameters keeps {kept:,} coefficients (coefficient compression {method_cfg.compression:.6f})")
    return method_cfg


def _build_session(cfg: DictConfig, out_dir: Path, device: torch.device, resume_state, is_writer: bool) -> Session:
    """Data, model, method and tracker of a run, as one Session (the flow of DESIGN.md)."""
    data = DATASETS.get(cfg.dataset.name)(
        cfg.dataset, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
        seed=cfg.seed, device=device,
    )
    distributed.shard(data)  # each rank's part of every batch (nothing changes in one process)
    validate_model_fits(cfg, data.input_shape)
    init_seed = init_seed_of(cfg)
    model = build_model(cfg, data.num_classes, data.input_shape, init_seed).to(device)
    if cfg.trainer.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    elif cfg.trainer.channels_last:
        log.info("trainer.channels_last=true applies on CUDA only; the CPU run keeps the default memory format")
    model = distributed.prepare_model(model, cfg.trainer.sync_bn)
    method = METHODS.get(cfg.method.name)(method_config(cfg, model))
    purge = resume_state["global_step"] + 1 if resume_state else None
    tracker = Tracker(out_dir, purge_step=purge, enabled=is_writer)
    session = Session(cfg, out_dir, device, model, data, method, tracker, init_seed, resume_state, is_writer)
    attach_measurements(session)  # FLOPs for every run; interspace probes and metrics when sharing != none
    if distributed.active():
        session.extra_metrics.append(distributed.metrics)
    session.log(data.description)
    session.log(f"model {cfg.model.name}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")
    if resume_state is None:
        tracker.text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
    return session


def run(cfg: DictConfig, out_dir: Path, choices: Optional[dict] = None, is_writer: bool = True) -> dict:
    """Run one experiment into `out_dir` and return its metrics (also written to metrics.json).

    Under torchrun every rank calls this with the same `out_dir`; only the writer (rank 0) writes."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_state = None
    if cfg.resume:
        metrics_path = out_dir / "metrics.json"
        if metrics_path.exists():
            previous = read_json(metrics_path)
            if previous.get("status") in ("completed", "diverged", "dry_run"):
                log.info(f"{out_dir} already finished (status {previous['status']}); nothing to resume")
                return previous
        if (out_dir / CHECKPOINT).exists():
            resume_state = load_torch(out_dir / CHECKPOINT)
    validate(cfg)
    if is_writer:
        for warning in config_warnings(cfg):
            log.warning(f"WARNING: {warning}")
    device = distributed.rank_device(resolve_device(cfg.device))
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if is_writer:
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
        write_json(out_dir / "metrics.json", {"status": "running"})

    tracker = None
    try:  # any failure from here on is recorded as failed, never as a result
        session = _build_session(cfg, out_dir, device, resume_state, is_writer)
        tracker = session.tracker
        session.method.run(session)
        status = "dry_run" if cfg.dry_run else session.status
    except Exception as exc:
        if is_writer:
            write_json(out_dir / "metrics.json", failure_record(cfg, f"{type(exc).__name__}: {exc}", choices or {}))
        if tracker is not None:
            tracker.close()
        raise

    metrics = build_metrics(session, status, choices or {}, run_info(cfg, device), time.perf_counter() - t_start)
    if is_writer:
        metrics["storage"] = storage = export_run(session, out_dir, metrics["params"])
        session.log(
            f"storage: dense {storage['dense_kb']:.1f} kB, trained values {storage['trained_values_kb']:.1f} kB "
            f"(compression factor {storage['compression_factor']:.1f}), CSR {storage['csr_kb']:.1f} kB, "
            f"mask+values {storage['mask_values_kb']:.1f} kB, entropy-coded {storage['entropy_kb']:.1f} kB, "
            f"{COMPRESSED} {storage['file_kb']:.1f} kB"
        )
        session.mask.save(out_dir / "mask.npz")
        session.save_checkpoint(getattr(session, "last_trainer", None))
        write_json(out_dir / "metrics.json", metrics)
        if status in ("completed", "diverged"):
            tracker.hparams(hparams_of(cfg, choices or {}), {
                "test_acc": metrics["test_acc"], "best_val_acc": metrics["best_val_acc"],
                "final_train_acc": metrics["final_train_acc"],
            })
    tracker.close()
    return metrics
