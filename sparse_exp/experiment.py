"""Build the pieces of one run from the registries and run them; returns the metrics.

config -> data + model -> method (masks) -> trainer -> logs / metrics.json / mask / export.
"""
from __future__ import annotations

import copy
import logging
import shutil
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
from sparse_exp.models.build import build_model, init_seed_of
from sparse_exp.models.custom import declare_defaults
from sparse_exp.models.pretrained import load_pretrained
from sparse_exp.runinfo import run_info
from sparse_exp.tracking.files import load_torch, read_json, write_json
from sparse_exp.tracking.metrics import build_metrics, failure_record, hparams_of
from sparse_exp.tracking.tensorboard import Tracker
from sparse_exp.training.interrupt import InterruptGuard, Interrupted
from sparse_exp.training.session import CHECKPOINT, Session

log = logging.getLogger("sparse_exp")

FINISHED = ("completed", "diverged", "dry_run")  # statuses a resume or a re-run sweep leaves alone


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


def _build_session(cfg: DictConfig, out_dir: Path, device: torch.device, resume_state, is_writer: bool,
                   model: Optional[torch.nn.Module] = None) -> Session:
    """Data, model, method and tracker of a run, as one Session (the flow in the module docstring).
    `model`: the caller's own network instead of building cfg.model (the Python API, sparse_exp/api.py)."""
    data = DATASETS.get(cfg.dataset.name)(
        cfg.dataset, batch_size=cfg.trainer.batch_size, eval_batch_size=cfg.trainer.eval_batch_size,
        seed=cfg.seed, device=device,
    )
    distributed.shard(data)  # each rank's part of every batch (nothing changes in one process)
    if model is None:  # a model handed in is the caller's to fit
        validate_model_fits(cfg, data.input_shape)
    init_seed = init_seed_of(cfg)
    given = model
    if model is None:
        model = build_model(cfg, data.num_classes, data.input_shape, init_seed)
    else:
        model = declare_defaults(model)
        if cfg.sharing.name != "none":  # the standard basis first: the same function as the given weights
            from sparse_exp.layers.interspace import to_interspace

            to_interspace(model, cfg.sharing, cfg.init)
    if cfg.model.pretrained and resume_state is None:  # a resumed run restores its own weights
        info = load_pretrained(cfg.model.pretrained, model, cfg.model)
        log.info(f"model.pretrained: loaded {info['pretrained']} (architecture {info['pretrained_architecture'] or 'untagged'})")
    model = model.to(device)
    if cfg.trainer.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    elif cfg.trainer.channels_last:
        log.info("trainer.channels_last=true applies on CUDA only; the CPU run keeps the default memory format")
    model = distributed.prepare_model(model, cfg.trainer.sync_bn)
    method = METHODS.get(cfg.method.name)(method_config(cfg, model))
    purge = resume_state["global_step"] + 1 if resume_state else None
    tracker = Tracker(out_dir, purge_step=purge, enabled=is_writer)
    session = Session(cfg, out_dir, device, model, data, method, tracker, init_seed, resume_state, is_writer)
    session.weights_from_seed = given is None and not cfg.model.pretrained  # else frozen weights are stored
    attach_measurements(session)  # FLOPs for every run; interspace probes and metrics when sharing != none
    if distributed.active():
        session.extra_metrics.append(distributed.metrics)
    session.log(data.description)
    session.log(f"model {cfg.model.name}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")
    if resume_state is None:
        tracker.text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
    return session


def run(cfg: DictConfig, out_dir: Path, choices: Optional[dict] = None, is_writer: bool = True,
        notes: Optional[dict] = None, model: Optional[torch.nn.Module] = None) -> dict:
    """Run one experiment into `out_dir` and return its metrics (also written to metrics.json).
    `notes` (e.g. the sweep overrides that did not apply to this job) are added to metrics.json.

    Under torchrun every rank calls this with the same `out_dir`; only the writer (rank 0) writes.
    A signal (Ctrl-C, SIGTERM, SIGUSR1/2) ends the run with a checkpoint, `status: interrupted` in
    metrics.json and `Interrupted` raised to the caller (training/interrupt.py).
    `model`: train this network (with its current weights) instead of building cfg.model."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = dict(notes or {})
    resume_state = None
    if cfg.resume:
        metrics_path = out_dir / "metrics.json"
        if metrics_path.exists():
            previous = read_json(metrics_path)
            if previous.get("status") in FINISHED:
                log.info(f"{out_dir} already finished (status {previous['status']}); nothing to resume")
                return previous
        if (out_dir / CHECKPOINT).exists():
            resume_state = load_torch(out_dir / CHECKPOINT)
    if resume_state is None and is_writer:
        # Starting from scratch in a dir that held an attempt (resume without a checkpoint, a rerun of a
        # failed sweep job): its TensorBoard events would draw a second curve over the same steps.
        shutil.rmtree(out_dir / "tb", ignore_errors=True)
    validate(cfg)
    if is_writer:
        for warning in config_warnings(cfg):
            log.warning(f"WARNING: {warning}")
    device = distributed.rank_device(resolve_device(cfg.device))
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if is_writer:
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
        # the config goes in too: a report lists a run that never finished with what it was
        write_json(out_dir / "metrics.json", {"status": "running", "config": OmegaConf.to_container(cfg, resolve=True), **notes})

    session = None
    with InterruptGuard() as guard:
        try:  # any failure from here on is recorded as failed, never as a result
            session = _build_session(cfg, out_dir, device, resume_state, is_writer, model)
            session.interrupt, session.started = guard, t_start
            session.method.run(session)
            status = "dry_run" if cfg.dry_run else session.status
        except Interrupted as exc:
            if is_writer:
                write_json(out_dir / "metrics.json", interrupted_record(cfg, exc, choices or {}, notes, out_dir))
            if session is not None:
                session.tracker.close()
            guard.chain(exc.signum)  # submitit's handler requeues the job (it continues from the checkpoint)
            raise
        except Exception as exc:
            if is_writer:
                write_json(out_dir / "metrics.json",
                           {**failure_record(cfg, f"{type(exc).__name__}: {exc}", choices or {}), **notes})
            if session is not None:
                session.tracker.close()
            raise

    tracker = session.tracker
    metrics = build_metrics(session, status, choices or {}, run_info(cfg, device),
                            session.previous_elapsed_s + time.perf_counter() - t_start)
    metrics.update(notes)
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


def interrupted_record(cfg, exc: Interrupted, choices: dict, notes: dict, out_dir: Path) -> dict:
    """metrics.json of an interrupted run: where it stopped and how to continue, never a result."""
    record = failure_record(cfg, str(exc), choices)
    record.update(status="interrupted", signal=exc.signum, checkpoint=(out_dir / CHECKPOINT).exists(), **notes)
    return record
