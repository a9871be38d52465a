"""Build docs/results.md (tables, figures, CSVs) from the runs of scripts/reproduce.py.

Every number on the page is read from the runs' metrics.json files through sparse-exp-report's own
functions (sparse_exp/report); the papers' numbers and claims are quoted from the thesis. Each claim is
checked against the measured means, and the verdict sentence is written from them.

    python scripts/results_page.py reproduce/runs docs      # (scripts/reproduce.py calls this)
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from sparse_exp.report import build, find_runs, plot
from sparse_exp.report.runs import lookup
from sparse_exp.report.tables import mean_std, metric_values, write_csv

REPO = Path(__file__).resolve().parent.parent


# measured means ---------------------------------------------------------------------------------------
def select(runs: list[dict], **where) -> list[dict]:
    """Runs whose config matches every `key=value` (dots written as __: method__name="snip")."""
    out = []
    for run in runs:
        if all(_eq(lookup(run, k.replace("__", ".")), v) for k, v in where.items()):
            out.append(run)
    return out


def _eq(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return a == b


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        if not self.n:
            return "n/a"
        spread = f" ± {100 * self.std:.2f}" if self.n > 1 else ""
        return f"{100 * self.mean:.2f}{spread}% (n={self.n})"


def stat(runs: list[dict], metric: str = "test_acc", **where) -> Stat:
    values = metric_values(select(runs, **where), metric)
    m, s = mean_std(values)
    return Stat(m, 0.0 if math.isnan(s) else s, len(values))


@dataclass
class Claim:
    text: str  # the papers' claim, quoted or paraphrased with its source
    check: Callable[[list[dict]], tuple[Optional[bool], str]]  # -> (holds?, the measured numbers)
    why_not: str = ""  # what we found about the cause, shown only when the claim does not hold here


@dataclass
class Experiment:
    name: str
    title: str
    what: str
    report: dict  # keyword arguments of sparse_exp.report.build (by, pivot_keys, tune_key, metrics)
    paper: str  # the papers' numbers for the same experiment (markdown)
    claims: list[Claim]
    figure: Optional[dict] = None  # keyword arguments of sparse_exp.report.plot
    extra_tables: list[dict] = field(default_factory=list)
    notes: str = ""


def above(a: Stat, b: Stat, margin: float = 0.0) -> Optional[bool]:
    if not (a.n and b.n):
        return None
    return a.mean > b.mean + margin


def verdict(holds: Optional[bool]) -> str:
    return {True: "**holds here**", False: "**does not hold here**", None: "**undecided here**"}[holds]


# page ---------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def commit_of(runs: list[dict]) -> str:
    commits = sorted({str(r["git"])[:12] + (" (with uncommitted changes)" if str(r["git"]).endswith("-dirty") else "")
                      for r in runs if r.get("git")})
    return ", ".join(commits) or "unknown"


def build_page(runs_dir: Path, docs: Path, timing: dict, names: list[str], quick: bool = False, jobs: int = 2) -> Path:
    from results_spec import EXPERIMENTS, HEADER_NOTES

    docs = Path(docs)
    figures, tables = docs / "figures", docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    all_runs = []
    body = []
    for exp in EXPERIMENTS:
        if exp.name not in names and not (runs_dir / exp.name).exists():
            continue
        runs = find_runs([runs_dir / exp.name]) if (runs_dir / exp.name).exists() else []
        all_runs += runs
        body.append(f"## {exp.title}\n")
        body.append(f"`sparse-exp -m experiment={exp.name}` (conf/experiment/{exp.name}.yaml). {exp.what}\n")
        if not runs:
            body.append("_Not run yet._\n")
            continue
        statuses = {s: sum(r.get("status") == s for r in runs) for s in ("completed", "diverged", "failed", "running", "interrupted", "dry_run")}
        minutes = timing.get(exp.name, {}).get("seconds", float("nan")) / 60
        body.append(f"Runs: {', '.join(f'{n} {s}' for s, n in statuses.items() if n)}; wall time {minutes:.1f} min.\n")
        for i, spec in enumerate([exp.report, *exp.extra_tables]):
            spec = dict(spec)
            caption = spec.pop("caption", "")
            text, rows, _, _ = build(runs, **spec)
            suffix = "" if i == 0 else f"_{i + 1}"
            write_csv(rows, tables / f"{exp.name}{suffix}.csv")
            if caption:
                body.append(f"**{caption}** ([CSV](results/{exp.name}{suffix}.csv))\n")
            else:
                body.append(f"([CSV](results/{exp.name}{suffix}.csv))\n")
            body.append(text)
        if exp.figure:
            files = plot(runs, figures / exp.name, **exp.figure)
            if files:
                body.append(f"![{exp.name}](figures/{exp.name}.png)\n")
        body.append("**The papers:** " + exp.paper.strip() + "\n")
        body.append("**Claims checked:**\n")
        for claim in exp.claims:
            holds, detail = claim.check(runs)
            body.append(f"- {claim.text}: {verdict(holds)} ({detail})."
                        + (f" *Cause, as far as we found:* {claim.why_not}" if holds is False and claim.why_not else ""))
        body.append("")
        if exp.notes:
            body.append(exp.notes.strip() + "\n")
    total = sum(t.get("seconds", 0.0) for name, t in timing.items() if name in names)
    header = [
        "# Reproducing the papers at CPU scale" + (" (quick pipeline check, not results)" if quick else ""),
        "",
        "Generated by `scripts/reproduce.py` (`make reproduce`) from the runs' `metrics.json` files with the "
        "functions of `sparse-exp-report`; do not edit by hand. The aggregated tables are in `docs/results/*.csv`, "
        "the figures in `docs/figures/`.",
        "",
        f"- Code commit of the runs: {commit_of(all_runs)}; page built {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        f"- Machine: {machine()}; {jobs} jobs at a time, one PyTorch thread each.",
        f"- Wall time of the runs: {total / 60:.1f} min"
        + (" (summed over the attempts of each experiment)"
           if any(isinstance(t, dict) and t.get("attempts", 1) > 1 for t in timing.values()) else "") + ".",
        *([f"- Conditions: {timing['_note']}"] if timing.get("_note") else []),
        "",
        HEADER_NOTES.strip(),
        "",
    ]
    page = docs / "results.md"
    page.write_text("\n".join(header + body) + "\n")
    print(f"page: {page}")
    return page


if __name__ == "__main__":
    runs_dir, docs = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    timing_file = runs_dir.parent / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    build_page(runs_dir, docs, timing, [p.name for p in runs_dir.iterdir() if p.is_dir()])
