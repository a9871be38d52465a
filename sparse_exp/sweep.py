"""The multirun sweeper of `sparse-exp -m`: Hydra's basic sweeper plus what a grid of experiments needs.

Before the first job is launched, every job's config is composed and validated (ranges, model fits
dataset, method needs sharing, ...), so a bad value in job 37 of a SLURM array fails in seconds.
A key that only some jobs' groups have (`method=snip,cops method.alpha=0.9`: SNIP has no alpha) is
dropped from the jobs that lack it; each such job prints and records in its metrics.json which
overrides did not apply. A key that no job has is an error. Jobs that become identical once their
inapplicable overrides are dropped run once.

The plan is written to `<sweep dir>/sweep.json` (job number, overrides, what did not apply), which
the jobs read to print "job k of N". Re-running the same command into the same sweep dir skips
completed jobs, resumes interrupted ones from their checkpoints and reruns failed ones (the job
side of this lives in cli.py). At the end a summary is printed; the exit status is 1 if a job failed.

Hydra only instantiates sweepers from the `hydra_plugins` package; hydra_plugins/sparse_exp_sweeper
subclasses the class below (Hydra looks plugins up by the module they are defined in).
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from sparse_exp.errors import ConfigError

log = logging.getLogger("sparse_exp")

PLAN = "sweep.json"


@dataclass
class SparseExpSweeperConf:
    _target_: str = "hydra_plugins.sparse_exp_sweeper.SparseExpSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None
    # A union of grids (each a dict like `params`): the jobs of every grid, one after another. Each grid is
    # combined with `params` and the command line, so one preset can hold e.g. SNIP/FreezeNet over q plus
    # FreezeNet at q = 1 plus the dense baseline, each with its own trainer.
    grids: Optional[list[dict[str, str]]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="sparse_exp", node=SparseExpSweeperConf)


@dataclass
class Job:
    num: int
    overrides: list[str]
    not_applied: list[str] = field(default_factory=list)
    dir: str = ""
    same_as: Optional[int] = None  # identical to an earlier job once inapplicable overrides are dropped


def _missing_key(exc: Exception) -> Optional[str]:
    """The full key of a 'no such key' composition error, else None."""
    cause = exc
    while cause is not None and not isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        cause = cause.__cause__
    return getattr(cause, "full_key", None) if cause is not None else None


def _reason(exc: BaseException) -> str:
    """The innermost message of a composition error (Hydra's outer one only names the file)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_plan(sweep_dir: Path) -> dict:
    try:
        return json.loads((Path(sweep_dir) / PLAN).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


class PlanningSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None,
                 grids: Optional[list[dict[str, str]]] = None) -> None:
        # BasicSweeper.__init__ is not called: Hydra's plugin scan re-executes its module, after which its
        # `super(BasicSweeper, self)` no longer matches this class. These are the attributes it sets.
        self.overrides = None
        self.batch_index = 0
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.grids = [dict(g) for g in grids] if grids else [{}]
        self.hydra_context = None
        self.config = None
        self.launcher = None

    # planning -------------------------------------------------------------------------------
    def _compose(self, overrides: list[str], num: int) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = num
        return cfg

    def _plan_job(self, num: int, overrides: list[str]) -> tuple[Job, DictConfig]:
        """Compose the job, dropping overrides of keys its groups do not have."""
        job = Job(num, list(overrides))
        while True:
            try:
                cfg = self._compose(job.overrides, num)
                break
            except ConfigCompositionException as exc:
                key = _missing_key(exc)
                match = [o for o in job.overrides if key and o.split("=", 1)[0].lstrip("+~") == key]
                if not match:
                    raise
                job.overrides.remove(match[0])
                job.not_applied.append(match[0])
        job.dir = str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))
        return job, cfg

    def plan(self, batches: list[list[list[str]]]) -> list[Job]:
        from sparse_exp.config.validate import validate, validate_model_fits_statically

        jobs, errors, seen = [], [], {}
        applied_somewhere: set[str] = set()
        dropped: set[str] = set()
        for overrides in (o for batch in batches for o in batch):
            num = len(jobs)
            try:
                job, cfg = self._plan_job(num, overrides)
            except ConfigCompositionException as exc:
                errors.append(f"job {num} ({' '.join(overrides)}): {_reason(exc)}")
                jobs.append(Job(num, list(overrides)))
                continue
            dropped |= {o.split("=", 1)[0] for o in job.not_applied}
            applied_somewhere |= {o.split("=", 1)[0] for o in job.overrides}
            key = tuple(sorted(job.overrides))
            if job.not_applied and key in seen:
                job.same_as = seen[key]
            seen.setdefault(key, num)
            try:
                task = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
                validate(task)
                validate_model_fits_statically(task)
            except ConfigError as exc:
                errors.append(f"job {num} ({' '.join(job.overrides)}): {exc}")
            jobs.append(job)
        for key in sorted(dropped - applied_somewhere):
            errors.insert(0, f"{key}: no job of this sweep has this key (its group options lack it)")
        if errors:
            print(f"error: {len(errors)} problem(s) found before launching any job:", file=sys.stderr)
            for line in errors[:20]:
                print(f"  {line}", file=sys.stderr)
            if len(errors) > 20:
                print(f"  ... and {len(errors) - 20} more", file=sys.stderr)
            sys.exit(2)
        return jobs

    # running ----------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        batches = []
        for grid in self.grids:  # command line last: it overrides a grid's value of the same key
            params = {**self.params, **grid}
            conf = [f"{k}={v}" for k, v in params.items() if k not in {a.split("=", 1)[0] for a in arguments}]
            batches += self.split_arguments(parser.parse_overrides(conf + list(arguments)), None)
        jobs = self.plan(batches)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        plan = {"total": len(jobs), "jobs": [vars(j) for j in jobs]}
        (sweep_dir / PLAN).write_text(json.dumps(plan, indent=1))
        runnable = [j for j in jobs if j.same_as is None]
        log.info(f"sweep of {len(jobs)} jobs into {sweep_dir}" + (
            f" ({len(jobs) - len(runnable)} duplicates once inapplicable overrides are dropped)" if len(runnable) < len(jobs) else ""))
        returns = []
        if type(self.launcher).__name__ == "BasicLauncher":  # (the class may be loaded twice, see __init__)
            # its "Launching 1 jobs locally" per job says less than the jobs' own "job k of N" lines
            logging.getLogger("hydra._internal.core_plugins.basic_launcher").setLevel(logging.WARNING)
            for job in runnable:  # one at a time keeps each job's number, and its dir, stable
                returns.append(self.launcher.launch([job.overrides], initial_job_idx=job.num))
        else:  # parallel launchers take the whole batch; duplicates run as the same dir twice otherwise
            by_num = {j.num: j for j in runnable}
            nums = sorted(by_num)
            if nums == list(range(len(nums))):
                returns.append(self.launcher.launch([by_num[n].overrides for n in nums], initial_job_idx=0))
            else:
                for n in nums:
                    returns.append(self.launcher.launch([by_num[n].overrides], initial_job_idx=n))
        for batch in returns:
            for r in batch:
                try:
                    _ = r.return_value
                except Exception:  # noqa: BLE001 - the job's own record says what failed
                    pass
        summary, failed = summarise(jobs)
        print(summary, flush=True)
        if failed:
            sys.exit(1)
        return returns


def summarise(jobs: list[Job]) -> tuple[str, int]:
    """One line per outcome, and the failed jobs with their dirs and first error lines."""
    counts: dict[str, int] = {}
    failures = []
    for job in jobs:
        if job.same_as is not None:
            counts["duplicate (not run)"] = counts.get("duplicate (not run)", 0) + 1
            continue
        try:
            record = json.loads((Path(job.dir) / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError):
            record = {"status": "failed", "error": "no metrics.json was written"}
        status = record.get("status", "unknown")
        if status in ("running", "unknown"):
            status = "failed"
            record.setdefault("error", "the job stopped without recording a result")
        counts[status] = counts.get(status, 0) + 1
        if status in ("failed", "interrupted"):
            first = str(record.get("error", "interrupted")).strip().splitlines() or [""]
            failures.append(f"  job {job.num}: {job.dir}\n    {first[0]}")
    total = len(jobs)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [f"sweep finished: {total} jobs: {parts}"]
    if failures:
        lines.append(f"{len(failures)} of {total} jobs failed:")
        lines += failures
    return "\n".join(lines), len(failures)
