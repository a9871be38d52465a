"""metrics.json: the final and best-validation figures of a run, and how to read them back."""
from __future__ import annotations

import dataclasses

from omegaconf import OmegaConf

from sparse_exp.measure.storage import basis_parameters, q_with_bases


def parameter_counts(session) -> dict:
    """Total/trainable parameters and prunable weights; a frozen or pruned weight is not trainable.
    `basis` / `trainable_basis`: filter-basis parameters of an interspace model (0 for SP; IP Table A2)."""
    model = session.model
    total = sum(p.numel() for p in model.parameters())
    trainable_all = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trained_w, total_w = session.enforcer.trainable_counts()
    return {
        "total": total,
        "trainable": trainable_all - (total_w - trained_w),
        "total_weights": total_w,
        "trainable_weights": trained_w,
        "basis": basis_parameters(model),
        "trainable_basis": basis_parameters(model, trainable_only=True),
    }


def compression_of(params: dict) -> dict:
    """q counts prunable weights (IP: coefficients) only, as the papers report; q_beta all parameters
    (thesis 3.3.3.1); q_with_bases also counts the filter bases (Fig. 5.10; measure/storage.py)."""
    q = 1.0 - params["trainable_weights"] / params["total_weights"] if params["total_weights"] else 0.0
    q_beta = 1.0 - params["trainable"] / params["total"] if params["total"] else 0.0
    q_bases = q_with_bases(params["trainable_weights"], params["total_weights"],
                           params.get("trainable_basis", 0), params.get("basis", 0))
    return {"q": q, "q_beta": q_beta, "q_with_bases": q_bases}


def build_metrics(session, status: str, choices: dict, info: dict, total_s: float) -> dict:
    final = session.final_phase()
    params = parameter_counts(session)
    mask = session.mask
    metrics = {
        "status": status,
        "test_acc": final.test_acc if final else None,
        "best_val_acc": final.best_val_acc if final else None,
        "best_epoch": final.best_epoch if final else None,
        # how test_acc was picked: early stopping on the validation split, or the final epoch when
        # dataset.val_fraction=0 leaves no validation set (the papers' ImageNet columns)
        "test_acc_selection": "best_val_epoch" if session.cfg.dataset.val_fraction > 0 else "final_epoch",
        "final_train_acc": final.final_train_acc if final else None,
        "final_val_acc": final.final_val_acc if final else None,
        "final_test_acc": final.final_test_acc if final else None,
        "params": params,
        "compression": compression_of(params),
        "mask_mode": session.enforcer.mode,
        "mask_sha256": mask.sha256(),
        "layers": mask.layers(),
        "empty_layers": mask.empty_layers(),
        "time": {
            "mask_s": session.mask_s,
            "train_s": sum(p.train_s for p in session.phases.values()),
            "total_s": total_s,
        },
        "seed": session.cfg.seed,
        "init_seed": session.init_seed,
        "choices": dict(choices),
        "config": OmegaConf.to_container(session.cfg, resolve=True),
        **info,
        "history": final.history if final else [],
    }
    if len(session.phases) > 1:
        metrics["phases"] = {
            name: {k: v for k, v in dataclasses.asdict(p).items() if k != "history"} for name, p in session.phases.items()
        }
    metrics.update(session.method.summary())
    for extra in getattr(session, "extra_metrics", []):
        metrics.update(extra(session))
    return metrics


def hparams_of(cfg, choices: dict) -> dict:
    """The hyperparameters shown as columns in TensorBoard's HParams view (the union over a sweep's runs)."""
    flat = {
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "sharing": cfg.sharing.name,
        "init": cfg.init.name,
        "seed": cfg.seed,
        "trainer.name": cfg.trainer.name,
        "lr": cfg.trainer.lr,
        "trainer.weight_decay": cfg.trainer.weight_decay,
        "trainer.precision": cfg.trainer.precision,
        "optimizer": cfg.trainer.optimizer,
        "epochs": cfg.trainer.epochs,
        "batch_size": cfg.trainer.batch_size,
        "tags": ",".join(map(str, cfg.get("tags") or [])),
    }
    for group in ("method", "sharing"):  # every scalar knob: α grids, basis counts nc, dictionary sizes n#
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key != "name" and isinstance(value, (int, float, str, bool)):
                flat[f"{group}.{key}"] = value
    if choices.get("experiment"):
        flat["experiment"] = choices["experiment"]
    return flat


def failure_record(cfg, error: str, choices: dict) -> dict:
    """What a failed run leaves behind: the reason and the config, never a result."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable config is itself the error being reported
        config = OmegaConf.to_container(cfg, resolve=False)
    return {"status": "failed", "error": error, "choices": dict(choices), "config": config}
