"""The `sparse-exp` command: compose the Hydra config, validate it, hand it to experiment.run().

    sparse-exp                                   # the default experiment (FreezeNet, LeNet-5, Fashion-MNIST)
    sparse-exp model=vgg16 dataset=cifar10 method=snip method.compression=0.99
    sparse-exp -m method.compression=0.9,0.99 seed=0,1,2     # a sweep, one run dir per job
    sparse-exp resume=outputs/2026-11-21/12-00-00-123456     # continue a killed run
    torchrun --nproc_per_node=4 -m sparse_exp model=resnet50 ...   # one run on 4 GPUs (DDP)
    sparse-exp -m hydra/launcher=slurm seed=0,1,2,3,4 ...          # a sweep as SLURM jobs
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sparse_exp import distributed
from sparse_exp.cli_help import is_shell_completion, print_version_if_asked
from sparse_exp.config.overrides import CONF_DIR, GROUPS, check_group_choices, check_overrides, group_options, sweep_keys  # noqa: F401
from sparse_exp.errors import ConfigError
from sparse_exp.tracking.metrics import failure_record

log = logging.getLogger("sparse_exp")


def _run_dir(resume, default):
    """hydra.run.dir: a resumed run writes into the run it continues."""
    return resume if resume not in (None, "None", "null", "") else default


SWEEP_KEYS_ENV = "SPARSE_EXP_SWEEP_KEYS"


def _sweep_subdir(task_overrides, sweeper_params=None) -> str:
    """Multirun job dirs name the overrides that vary across the sweep (from the command line and
    from a preset's hydra.sweeper.params), filesystem-safe and shortened if long."""
    varying = set(filter(None, os.environ.get(SWEEP_KEYS_ENV, "").split(",")))
    varying |= set((sweeper_params or {}).keys())
    items = [str(o) for o in task_overrides]
    chosen = [o for o in items if o.split("=", 1)[0].lstrip("+~") in varying] or items
    safe = ",".join(chosen).replace("/", "_").replace(" ", "") or "base"
    if len(safe) > 120:
        safe = safe[:100] + "-" + hashlib.sha1(safe.encode()).hexdigest()[:8]
    return safe


for _name, _fn in (("run_dir", _run_dir), ("sweep_subdir", _sweep_subdir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def _register_schemas() -> None:
    """Import everything that registers schemas in Hydra's ConfigStore (methods, datasets, ...)."""
    import sparse_exp.config.schema  # noqa: F401
    import sparse_exp.data  # noqa: F401
    import sparse_exp.methods  # noqa: F401
    import sparse_exp.models  # noqa: F401


def _compose(overrides: list[str]) -> DictConfig:
    """The task config for `overrides`, composed the way @hydra.main will (for the checks in main)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


RUN_FILES = ("metrics.json", "config.yaml", "mask.npz", "compressed.npz", "checkpoint.pt", "run.log")


def _print_summary(metrics: dict, out_dir: Path) -> None:
    def pct(x):
        return "n/a" if x is None or x != x else f"{100 * x:.2f}%"  # None or NaN: nothing measured

    p, c = metrics["params"], metrics["compression"]
    written = [f for f in RUN_FILES if (out_dir / f).exists()]
    if metrics["status"] == "dry_run":
        result = "dry run: masks computed, nothing trained"
    else:
        result = (f"test accuracy at the best validation epoch ({metrics.get('best_epoch')}): {pct(metrics.get('test_acc'))}"
                  f" (validation {pct(metrics.get('best_val_acc'))}, final train {pct(metrics.get('final_train_acc'))})")
    lines = [
        f"status: {metrics['status']}",
        result,
        f"trained parameters: {p['trainable']:,} of {p['total']:,}; weights {p['trainable_weights']:,} of "
        f"{p['total_weights']:,} (q = {c['q']:.4f}, q_beta = {c['q_beta']:.4f})",
        f"run dir: {out_dir}  ({', '.join(written)})",
        f"TensorBoard: tensorboard --logdir {out_dir / 'tb'}",
    ]
    print("\n".join(lines), flush=True)


@hydra.main(config_path="pkg://sparse_exp.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig):
    from sparse_exp import experiment

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    single = hc.mode != RunMode.MULTIRUN
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    writer = distributed.is_main()  # under torchrun only rank 0 writes into the run dir
    if cfg.resume:
        saved = Path(cfg.resume) / "config.yaml"
        if not saved.exists():
            log.error(f"error: resume: {cfg.resume} has no config.yaml; it is not a sparse-exp run directory")
            sys.exit(2)
        # Continue with the run's own config; only the device may change (another machine).
        device = cfg.device
        cfg = OmegaConf.load(saved)
        cfg.resume = str(Path(out_dir))
        cfg.device = device
    # Relative data paths mean "relative to where the command was typed"; record them absolute.
    cfg.dataset.root = str(Path(cfg.dataset.root).expanduser().absolute())
    try:
        metrics = experiment.run(cfg, out_dir, choices=choices, is_writer=writer)
    except ConfigError as exc:
        log.error(f"error: {exc}")
        from sparse_exp.tracking.files import write_json

        if writer:
            write_json(out_dir / "metrics.json", failure_record(cfg, str(exc), choices))
        if single:
            sys.exit(2)
        return None
    except Exception:
        log.exception("the run failed")
        if single:
            sys.exit(1)
        return None
    if writer:
        _print_summary(metrics, out_dir)
    if metrics["status"] == "diverged" and single:
        sys.exit(3)
    return metrics.get("best_val_acc")


def main() -> None:
    _register_schemas()
    print_version_if_asked(sys.argv[1:])
    message = None if is_shell_completion(sys.argv[1:]) else check_overrides(sys.argv[1:], _compose)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    multirun = "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]
    if multirun and distributed.launched():
        print("error: -m/--multirun does not run under torchrun (every rank would start the whole sweep); run the "
              "sweep with a Hydra launcher (hydra/launcher=joblib_local|submitit_local|slurm) or start one torchrun "
              "per grid point", file=sys.stderr)
        sys.exit(2)
    if multirun:
        os.environ[SWEEP_KEYS_ENV] = ",".join(sweep_keys(sys.argv[1:]))
    # Under torchrun: join the process group before Hydra composes; all ranks agree on one run dir.
    distributed.init()
    sys.argv += distributed.hydra_overrides(sys.argv[1:])
    try:
        _hydra_main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
