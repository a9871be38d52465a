"""Run the CPU-scale reproduction of the papers (conf/experiment/repro_*.yaml) and build its page.

    python scripts/reproduce.py                  # everything: reproduce/runs/<experiment>, then docs/results.md
    python scripts/reproduce.py --quick          # 1 seed, 20 steps per epoch: reproduce-quick/ (pipeline check)
    python scripts/reproduce.py --only repro_fig3_6 repro_fig4_8
    python scripts/reproduce.py --page-only      # rebuild the page from the runs already there

Each experiment is one `sparse-exp -m experiment=<name>` sweep into its own sweep dir, two jobs at a time
(joblib, one thread per job). A re-run skips finished jobs and resumes interrupted ones (the sweeper's
re-run rule), so an interrupted reproduction continues where it stopped. Wall times per experiment are
kept in <out>/timing.json for the page.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = ("repro_fig3_3", "repro_fig3_4b", "repro_fig3_6", "repro_table4_1", "repro_fig4_6", "repro_fig4_8",
               "repro_fig5_5", "repro_fig5_9a", "repro_others")
QUICK = ("seed=0", "trainer.epochs=1", "trainer.max_steps_per_epoch=20")
QUICK_SCORING = ("method.score_batches=2",)  # for the experiments whose every method scores (chapter 4)
# repro_others' iteration counts (LTH's rewind point, RigL's and GMP's schedules) scaled to the 20 quick steps
QUICK_OTHERS = ('hydra.sweeper.grids=[{method:lth,method.rewind_step:"5"},{method:rigl,method.update_every:"10"},'
                '{method:gmp,method.reference_batch_size:"null",method.begin_step:"5",method.end_step:"15",'
                'method.update_every:"5"},{method:ft}]',)
QUICK_EXTRA = {"repro_table4_1": QUICK_SCORING, "repro_fig4_6": QUICK_SCORING, "repro_fig4_8": QUICK_SCORING,
               "repro_others": QUICK_OTHERS}


def sparse_exp() -> list[str]:
    exe = Path(sys.executable).with_name("sparse-exp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sparse_exp"]


def run_experiment(name: str, runs: Path, jobs: int, quick: bool, extra: list[str] = ()) -> tuple[int, float]:
    cmd = [*sparse_exp(), "-m", f"experiment={name}", f"hydra.sweep.dir={runs / name}",
           "hydra/launcher=joblib_local", f"hydra.launcher.n_jobs={jobs}",
           *((*QUICK, *QUICK_EXTRA.get(name, ())) if quick else ()), *extra]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    log = runs / f"{name}.log"
    runs.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    seconds = time.perf_counter() - t0
    tail = log.read_text().strip().splitlines()[-3:]
    print(f"   exit {rc} after {seconds / 60:.1f} min; " + " | ".join(tail), flush=True)
    return rc, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch of 20 steps: checks the pipeline in minutes")
    parser.add_argument("--only", nargs="+", default=None, choices=EXPERIMENTS, help="run (and report) these experiments only")
    parser.add_argument("--out", type=Path, default=None, help="runs go to <out>/runs (default reproduce/ or reproduce-quick/)")
    parser.add_argument("--docs", type=Path, default=None, help="page dir (default docs/ for the full run, <out>/docs for --quick)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (one thread each)")
    parser.add_argument("--page-only", action="store_true", help="do not run anything; rebuild the page")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for every sweep (tests)")
    parser.add_argument("--note", default=None, help="a sentence about the conditions of this run, shown on the page")
    args = parser.parse_args(argv)

    out = args.out or REPO / ("reproduce-quick" if args.quick else "reproduce")
    runs = out / "runs"
    docs = args.docs or (out / "docs" if args.quick else REPO / "docs")
    names = args.only or list(EXPERIMENTS)
    timing_file = out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    failed = []
    if args.note:
        timing["_note"] = args.note
        out.mkdir(parents=True, exist_ok=True)
        timing_file.write_text(json.dumps(timing, indent=1))
    if not args.page_only:
        for name in names:
            rc, seconds = run_experiment(name, runs, args.jobs, args.quick, args.set)
            entry = timing.setdefault(name, {"seconds": 0.0, "attempts": 0})
            entry["seconds"] += seconds  # a resumed experiment adds the time of each attempt
            entry["attempts"] += 1
            entry["exit"] = rc
            out.mkdir(parents=True, exist_ok=True)
            timing_file.write_text(json.dumps(timing, indent=1))
            if rc != 0:
                failed.append(name)
    sys.path.insert(0, str(REPO / "scripts"))
    from results_page import build_page

    build_page(runs, docs, timing, names, quick=args.quick, jobs=args.jobs)
    if failed:
        print(f"{len(failed)} experiment(s) had failed jobs: {', '.join(failed)} (see {runs}/<name>.log)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
