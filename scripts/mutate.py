"""Mutation check of the core (`make mutate`): mutmut 3 on each core module against its own fast tests.

    python scripts/mutate.py                      # every module of MODULES, then the summary table
    python scripts/mutate.py --only schedule      # one module (the names are MODULES' keys)
    python scripts/mutate.py --jobs 2             # mutants tested in parallel (default 2: the 2-core budget)
    python scripts/mutate.py --continue           # keep the last results, test the mutants not reached (time limit)

mutmut reads its configuration from the pyproject.toml of the directory it runs in, and one run has one
test selection; so each module gets its own work directory .mutate/<name>/ (a copy of sparse_exp/,
tests/ and pyproject.toml with a [tool.mutmut] section naming the module and its tests). Inside a run
mutmut runs only the selected tests that execute the mutated function, in processes forked after the
imports. Each run starts afresh; `--continue` keeps the results of the last run (mutmut's cache in
.mutate/<name>/mutants/) and tests the mutants a time limit left unchecked.

Prints, per module, killed / survived / other (timeouts, suspicious, no tests) and the score
killed / (killed + survived + timeouts), and writes .mutate/summary.json and .mutate/<name>/survivors.txt
(the surviving mutants; `cd .mutate/<name> && mutmut show <mutant>` shows a diff). docs/testing.md
explains each survivor that is equivalent.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutate"

# module name -> (files to mutate, relative to the repo root; the fast tests that own them, as pytest
# arguments; minutes at most). The minutes add up to 30 (the budget of `make mutate` on 2 cores), each
# with headroom over a measured run (docs/testing.md); a module cut short reports its unchecked mutants as
# "not checked", and `--continue` goes on from there. COPS leaves out its tests marked `big` (10^5+
# entries, 0.4 s each: a surviving mutant runs every test of the selection); fast twins in
# tests/test_cops.py run the same code paths with the size limits lowered, and tests/test_cops_{search,bracket,
# parts}.py test single functions on problems small enough to work out by hand.
MODULES: dict[str, tuple[list[str], list[str], float]] = {
    "schedule": (["sparse_exp/training/schedule.py"], ["tests/test_schedule.py"], 1),
    "select": (["sparse_exp/sparsity/select.py"], ["tests/test_select.py"], 1),
    "enforce": (["sparse_exp/sparsity/enforce.py"], ["tests/test_enforce.py", "tests/test_optimizers.py"], 2),
    "scores": (["sparse_exp/sparsity/scores/*.py"], ["tests/test_scores.py", "tests/test_select.py"], 4),
    "cops": (["sparse_exp/sparsity/cops/*.py"], ["tests/test_cops.py", "tests/test_cops_search.py", "tests/test_cops_bracket.py",
                                                "tests/test_cops_parts.py", "-m", "not slow and not big"], 12),
    "trainer": (["sparse_exp/training/trainer.py"], ["tests/test_trainer.py"], 10),
}
# A mutant that loops is stopped after 2 x TIMEOUT_MULTIPLIER x (its tests' measured time + 1 s) of CPU time.
# mutmut's default multiplier (15) spent ~90 CPU seconds on each looping COPS mutant; with 3 a mutant still gets
# six times its tests' CPU time, far above what a forked test run needs (its imports are done).
TIMEOUT_MULTIPLIER = 3.0
# Statements not mutated: the text of error messages, log lines and warnings (what they say is checked by
# the tests of the messages; mutating every word of them would only multiply the mutants).
DO_NOT_MUTATE = [r"^\s*raise \w+(Error|Exception)\(", r"\bsession\.log\(", r"\blog\.(info|warning)\(",
                 r"messages\.append\(", r"warnings\.warn\("]


def mutmut_exe() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    return str(exe) if exe.exists() else "mutmut"


def undecorate_no_grad(source: str) -> str:
    """mutmut 3 leaves decorated functions alone; `@torch.no_grad()` (enforce.py, synflow.py) becomes a
    `with torch.no_grad():` around the body in the copy that is mutated (the same behaviour)."""
    import libcst as cst

    class Transformer(cst.CSTTransformer):
        def leave_FunctionDef(self, original, updated):
            keep = [d for d in updated.decorators if cst.Module([]).code_for_node(d.decorator) != "torch.no_grad()"]
            if len(keep) == len(updated.decorators):
                return updated
            with_block = cst.With(items=[cst.WithItem(cst.parse_expression("torch.no_grad()"))],
                                  body=cst.IndentedBlock(body=list(updated.body.body)))
            return updated.with_changes(decorators=keep, body=updated.body.with_changes(body=[with_block]))

    return cst.parse_module(source).visit(Transformer()).code


def prepare(name: str, keep_results: bool = False) -> Path:
    """.mutate/<name>/: the package, the tests and a pyproject.toml whose [tool.mutmut] is this module's.
    Earlier results are dropped unless `keep_results` (mutmut would not re-test a survivor when only
    the tests changed)."""
    sources, tests, _ = MODULES[name]
    work = WORK / name
    if not keep_results and (work / "mutants").exists():
        shutil.rmtree(work / "mutants")
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("sparse_exp", "tests"):  # refreshed every run; mutmut re-tests what changed
        if (work / folder).exists():
            shutil.rmtree(work / folder)
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for pattern in sources:
        for path in work.glob(pattern):
            path.write_text(undecorate_no_grad(path.read_text()))
    toml = (REPO / "pyproject.toml").read_text()
    toml += (
        "\n[tool.mutmut]\n"
        'source_paths = ["sparse_exp"]\n'
        f"only_mutate = {json.dumps(sources)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        'process_isolation = "fork"\n'
        f"do_not_mutate_patterns = {json.dumps(DO_NOT_MUTATE)}\n"
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}\n"
    )
    (work / "pyproject.toml").write_text(toml)
    return work


def run_module(name: str, jobs: int, minutes_scale: float = 1.0, keep_results: bool = False) -> dict:
    work = prepare(name, keep_results)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # import the mutated copy, not the repo
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    log = open(work / "run.log", "w")
    limit = MODULES[name][2] * 60 * minutes_scale
    proc = subprocess.Popen([mutmut_exe(), "run", "--max-children", str(jobs)], cwd=work, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        returncode = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:  # out of time: stop mutmut and its workers (its results so far are kept)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        returncode = "timeout"
    seconds = time.perf_counter() - t0
    results = subprocess.run([mutmut_exe(), "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True)
    counts: dict[str, int] = {}
    survivors = []
    for line in results.stdout.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if not mutant:
            continue
        counts[status] = counts.get(status, 0) + 1
        if status == "survived":
            survivors.append(mutant)
    (work / "survivors.txt").write_text("".join(f"{m}\n" for m in survivors))
    killed, survived = counts.get("killed", 0), counts.get("survived", 0)
    timeouts = counts.get("timeout", 0)
    decided = killed + survived + timeouts
    return {"module": name, "returncode": returncode, "seconds": round(seconds, 1), "counts": counts,
            "killed": killed, "survived": survived,
            "score": (killed + timeouts) / decided if decided else None, "survivors": survivors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(MODULES), help="modules to check (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply every module's time limit")
    parser.add_argument("--continue", dest="keep", action="store_true",
                        help="keep the results of the last run and test only the mutants it did not reach")
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)
    summary_path = WORK / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.only or list(MODULES):
        print(f"== {name}: mutating {', '.join(MODULES[name][0])} against {' '.join(MODULES[name][1])}", flush=True)
        result = run_module(name, args.jobs, args.time_scale, args.keep)
        summary[name] = result
        summary_path.write_text(json.dumps(summary, indent=1))
        score = "n/a" if result["score"] is None else f"{100 * result['score']:.1f}%"
        print(f"   {result['counts']} -> score {score} in {result['seconds']:.0f} s", flush=True)
        for mutant in result["survivors"]:
            print(f"   survived: {mutant}")
    print("\n| module | mutants | killed | survived | timeout | no tests | not checked | score | minutes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in summary.items():
        c = r["counts"]
        score = "n/a" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"| {name} | {sum(c.values())} | {r['killed']} | {r['survived']} | {c.get('timeout', 0)} | "
              f"{c.get('no tests', 0)} | {c.get('not checked', 0)} | {score} | {r['seconds'] / 60:.1f} |")
    print(f"| total | {sum(sum(r['counts'].values()) for r in summary.values())} | | | | | | | "
          f"{sum(r['seconds'] for r in summary.values()) / 60:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
