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
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sparse_exp import distributed
from sparse_exp.cli_help import is_shell_completion, print_version_if_asked
from sparse_exp.config.overrides import CONF_DIR, GROUPS, check_group_choices, check_overrides, group_options, is_sweep, plain_overrides, sweep_keys  # noqa: F401
from sparse_exp.errors import ConfigError
from sparse_exp.tracking.metrics import failure_record
from sparse_exp.training.interrupt import Interrupted

CHECKPOINT_FILE = "checkpoint.pt"  # training/session.py CHECKPOINT (not imported: keeps `--help` fast)

log = logging.getLogger("sparse_exp")


def _run_dir(resume, default):
    """hydra.run.dir: a resumed run writes into the run it continues."""
    return resume if resume not in (None, "None", "null", "") else default


SWEEP_KEYS_ENV = "SPARSE_EXP_SWEEP_KEYS"


def _sweep_subdir(task_overrides, sweeper_params=None, grids=None) -> str:
    """Multirun job dirs name the overrides that vary across the sweep (from the command line and
    from a preset's hydra.sweeper.params and .grids), filesystem-safe and shortened if long."""
    varying = set(filter(None, os.environ.get(SWEEP_KEYS_ENV, "").split(",")))
    varying |= set((sweeper_params or {}).keys())
    for grid in grids or []:
        varying |= set(grid.keys())
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
    import sparse_exp.sweep  # noqa: F401  (hydra/sweeper=sparse_exp)


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
        if metrics.get("test_acc_selection") == "final_epoch":  # dataset.val_fraction=0: no validation split
            result = (f"test accuracy at the final epoch: {pct(metrics.get('test_acc'))} (no validation split; "
                      f"final train {pct(metrics.get('final_train_acc'))})")
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


# Overrides that `resume=<run dir>` accepts: where and how fast the run continues, never what it computes.
RESUME_MAY_CHANGE = ("device", "trainer.threads", "trainer.log_every", "trainer.checkpoint_every_steps",
                     "trainer.checkpoint_every_min", "trainer.sparse_kernels", "dataset.root",
                     "dataset.num_workers")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _resumed_config(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> DictConfig:
    """The saved config of `run_dir` with the command line's harmless overrides applied; overrides that
    would change the run are refused with one sentence (nothing is ignored silently)."""
    saved = OmegaConf.load(run_dir / "config.yaml")
    changed = []
    for override in task_overrides:
        key = _override_key(override)
        if key == "resume" or key.startswith("hydra"):
            continue
        new, old = OmegaConf.select(cfg, key), OmegaConf.select(saved, key)
        if key in RESUME_MAY_CHANGE:
            OmegaConf.update(saved, key, new, merge=False)
        elif (OmegaConf.to_container(new, resolve=True) if isinstance(new, DictConfig) else new) != (
                OmegaConf.to_container(old, resolve=True) if isinstance(old, DictConfig) else old):
            was = old.get("name", "...") if isinstance(old, DictConfig) else old
            changed.append(f"{override} (the run has {key}={was})")
    if changed:
        raise ConfigError(f"resume: {'; '.join(changed)} would change the run in {run_dir}; resume it as it was "
                          f"(only {', '.join(RESUME_MAY_CHANGE)} may change) or start a new run")
    saved.resume = str(run_dir)
    return saved


def _sweep_job(cfg: DictConfig, out_dir: Path, hc) -> tuple[Optional[DictConfig], dict]:
    """A job of a multirun: (the config to run, or None to skip it; notes for its metrics.json).
    A re-run of a sweep skips finished jobs, resumes interrupted ones and reruns failed ones."""
    from sparse_exp.experiment import FINISHED
    from sparse_exp.sweep import read_plan

    num = int(hc.job.num)
    plan = read_plan(Path(hc.sweep.dir))
    job = next((j for j in plan.get("jobs", []) if j["num"] == num), {})
    total = plan.get("total", "?")
    notes = {"sweep_job": num}
    print(f"job {num} of {total}: {' '.join(hc.overrides.task) or '(no overrides)'}", flush=True)
    if job.get("not_applied"):
        notes["not_applied"] = job["not_applied"]
        print(f"job {num}: not applied (method={cfg.method.name} has no such key): {', '.join(job['not_applied'])}", flush=True)
    previous = {}
    if (out_dir / "metrics.json").exists():
        try:
            previous = json.loads((out_dir / "metrics.json").read_text())
        except json.JSONDecodeError:
            previous = {}
    status = previous.get("status")
    if status in FINISHED:
        print(f"job {num} {status} earlier, skipped", flush=True)
        return None, notes
    if status in ("running", "interrupted") and (out_dir / CHECKPOINT_FILE).exists():
        saved = OmegaConf.to_container(OmegaConf.load(out_dir / "config.yaml"), resolve=True)
        current = OmegaConf.to_container(cfg, resolve=True)
        if {k: v for k, v in saved.items() if k != "resume"} != {k: v for k, v in current.items() if k != "resume"}:
            raise ConfigError(f"job {num}: {out_dir} holds an interrupted run of another config; "
                              "use a new hydra.sweep.dir or remove that job dir")
        print(f"job {num} was interrupted earlier; resuming it from its checkpoint", flush=True)
        cfg.resume = str(out_dir)
    elif status is not None:
        print(f"job {num} {'failed' if status == 'failed' else 'stopped without a checkpoint'} earlier; running it again", flush=True)
    return cfg, notes


@hydra.main(config_path="pkg://sparse_exp.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig):
    from sparse_exp import experiment

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    single = hc.mode != RunMode.MULTIRUN
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    writer = distributed.is_main()  # under torchrun only rank 0 writes into the run dir
    notes: dict = {}
    try:
        if single and cfg.resume:
            if not (Path(cfg.resume) / "config.yaml").exists():
                raise ConfigError(f"resume: {cfg.resume} has no config.yaml; it is not a sparse-exp run directory")
            cfg = _resumed_config(cfg, Path(out_dir), list(hc.overrides.task))
        elif not single:
            cfg.dataset.root = str(Path(cfg.dataset.root).expanduser().absolute())  # as the saved config has it
            cfg, notes = _sweep_job(cfg, out_dir, hc)
            if cfg is None:
                return json.loads((out_dir / "metrics.json").read_text()).get("best_val_acc")
    except ConfigError as exc:
        log.error(f"error: {exc}")
        if single:
            sys.exit(2)
        return None
    # Relative data paths mean "relative to where the command was typed"; record them absolute.
    cfg.dataset.root = str(Path(cfg.dataset.root).expanduser().absolute())
    try:
        metrics = experiment.run(cfg, out_dir, choices=choices, is_writer=writer, notes=notes)
    except Interrupted as exc:
        how = f"sparse-exp resume={out_dir}" if single else f"the same command (or sparse-exp resume={hc.sweep.dir})"
        print(f"{exc}; continue with: {how}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        log.error(f"error: {exc}")
        from sparse_exp.tracking.files import write_json

        if writer:
            write_json(out_dir / "metrics.json", {**failure_record(cfg, str(exc), choices), **notes})
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


def defer_group_keys(argv: list[str]) -> list[str]:
    """`-m method=snip,cops method.alpha=0.9`: Hydra applies a plain override to the primary config (the
    default method, without alpha) before any job exists. Written as a one-value sweep, `method.alpha` is
    left to each job; the sweeper drops it from the jobs whose method lacks it (sparse_exp/sweep.py)."""
    swept = {k for k, v in plain_overrides(argv) if k in GROUPS and is_sweep(v)}
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if value and not arg.startswith(("-", "+", "~", "hydra")) and key.split(".")[0] in swept \
                and "." in key and not is_sweep(value):
            arg = f"{key}=choice({value})"
        out.append(arg)
    return out


def _sweep_rerun_argv(argv: list[str]) -> list[str]:
    """`sparse-exp resume=<sweep dir>`: the command line of that sweep again, into the same dir (finished
    jobs are skipped, interrupted ones resumed, failed ones rerun); other arguments are appended."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    sweep_dir = Path(resume[-1].split("=", 1)[1])
    if not (sweep_dir / "multirun.yaml").exists():
        return argv  # a run dir (or an error that validation reports)
    saved = OmegaConf.load(sweep_dir / "multirun.yaml")
    task = list(saved.hydra.overrides.task)
    hydra_args = [o for o in saved.hydra.overrides.hydra
                  if _override_key(o) not in ("hydra.mode", "hydra.sweep.dir") and not o.startswith("hydra.job_logging")]
    rest = [a for a in argv if not a.startswith("resume=") and a not in ("-m", "--multirun")]
    return ["-m", *task, *hydra_args, f"hydra.sweep.dir={sweep_dir}", *rest]


def main() -> None:
    _register_schemas()
    print_version_if_asked(sys.argv[1:])
    sys.argv[1:] = _sweep_rerun_argv(sys.argv[1:])
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
        sys.argv[1:] = defer_group_keys(sys.argv[1:])
    # Under torchrun: join the process group before Hydra composes; all ranks agree on one run dir.
    distributed.init()
    sys.argv += distributed.hydra_overrides(sys.argv[1:])
    try:
        _hydra_main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
