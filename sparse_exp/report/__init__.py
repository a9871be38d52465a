"""`sparse-exp-report`: collect the metrics.json of runs and sweeps into tables and a figure.

    sparse-exp-report multirun/2026-11-21/10-00-00-000000            # groups by every key that varies
    sparse-exp-report <sweep> --pivot method.name,method.compression  # methods down, q across (Table 3.2)
    sparse-exp-report <sweep> --tune method.alpha      # per group: the alpha with the best mean validation
                                                       # accuracy and its test accuracy (section 4.4.2)
    sparse-exp-report <sweep> --spread method.alpha    # Table 4.3: spread over the alphas
    sparse-exp-report <sweep> --metrics test_acc,storage.compression_factor,flops.speedup

By default runs are grouped by every config key whose value differs across them (the seed excepted),
so runs of different configurations are never averaged together; with --by, a key that still varies
inside a group is named in a warning and under the table. Writes table.md / table.csv (--tune:
table_tune.*, --spread: table_spread.*, --pivot: table_pivot.*) and the figure
accuracy_vs_compression.png/.pdf into --out (default: the first input).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparse_exp.report.plots import X_MODES, plot
from sparse_exp.report.runs import (FINISHED, INCOMPLETE, check_keys, find_runs, lookup, still_varying,
                                    varying_keys)
from sparse_exp.report.tables import (DEFAULT_METRICS, markdown, mean_std, pivot, spread, summarise, tune,
                                      write_csv)

__all__ = ["find_runs", "lookup", "summarise", "tune", "spread", "pivot", "plot", "mean_std", "main", "build"]

FACET_KEYS = ("dataset.name", "model.name")


def incomplete_lines(runs: list[dict], keys: list[str]) -> list[str]:
    """Runs that are still running or were interrupted: never a row, always named with their config."""
    lines = []
    for run in runs:
        if run.get("status") in INCOMPLETE:
            desc = ", ".join(f"{k}={lookup(run, k)}" for k in [*keys, "seed"] if lookup(run, k) is not None)
            lines.append(f"{run.get('status')}: {run['_dir']} ({desc})")
    return lines


def build(runs: list[dict], by: list[str] | None, metrics: list[str], *, tune_key=None, spread_key=None,
          pivot_keys=None, diverged_as_chance=False) -> tuple[str, list[dict], list[str], list[str]]:
    """(markdown, rows, grouping keys, footnotes) of one table; the pieces `main` writes."""
    finished_or_failed = [r for r in runs if r.get("status") not in INCOMPLETE]
    auto = by is None
    if auto:
        by = varying_keys(finished_or_failed) or ["method.name"]
    footnotes = [("Grouped by every config key that differs across the runs (seed excepted): " if auto else "Grouped by: ")
                 + ", ".join(by) + "."]
    mixed = [] if auto else still_varying(finished_or_failed, by)
    if mixed:
        footnotes.append(f"WARNING: {', '.join(mixed)} vary inside these groups and are averaged together.")
    footnotes.append("Cells: mean ± sample std over the runs of the group (n = runs); one run shows no spread. "
                     "Accuracies in %.")
    if diverged_as_chance:
        footnotes.append("Diverged runs are counted at chance accuracy (1 / number of classes).")
    else:
        footnotes.append("Diverged and failed runs are counted in their columns, not averaged in.")
    if tune_key:
        rows = tune(finished_or_failed, [*by, tune_key] if tune_key not in by else by, tune_key, metrics)
        footnotes.append(f"Section 4.4.2: per group, the {tune_key} with the best mean validation accuracy; "
                         f"its test accuracy is reported (grid = values tried).")
    elif spread_key:
        rows = spread(finished_or_failed, [*by, spread_key] if spread_key not in by else by, spread_key)
        footnotes.append(f"Over the values of {spread_key}: best/worst/mean of the per-value mean test accuracies; "
                         "'std of the per-value means' is their spread, 'std over all runs' the spread of single runs.")
    else:
        rows = summarise(finished_or_failed, by, metrics, diverged_as_chance)
        if pivot_keys:
            row_key, col_key = pivot_keys
            rows = pivot(rows, row_key, col_key, metrics[0], by)
            footnotes.append(f"{metrics[0]}: {row_key} down, {col_key} across.")
    incomplete = incomplete_lines(runs, by)
    if incomplete:
        footnotes.append(f"{len(incomplete)} incomplete run(s), not in the table:")
        footnotes += [f"  {line}" for line in incomplete]
    return markdown(rows, footnotes), rows, by, footnotes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparse-exp-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs, sweep dirs or metrics.json files")
    parser.add_argument("--by", default=None, help="comma-separated keys to group by (default: every key that varies)")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics.json or config keys to average (default: %(default)s)")
    parser.add_argument("--tune", default=None, help="key to select by best mean validation accuracy (e.g. method.alpha)")
    parser.add_argument("--spread", default=None, help="key searched over: spread of the mean test accuracy over its values (Table 4.3)")
    parser.add_argument("--pivot", default=None, help="ROW_KEY,COL_KEY: first metric with ROW_KEY down and COL_KEY across")
    parser.add_argument("--diverged-as-chance", action="store_true", help="count diverged runs at chance accuracy")
    parser.add_argument("--x", default="remaining", help=f"figure x axis: {' | '.join(X_MODES)} (of q, log scale) or a config key")
    parser.add_argument("--series", default=None, help="comma-separated keys, one line each (default: grouping keys except x and facets)")
    parser.add_argument("--facet", default=None, help="comma-separated keys, one panel each (default: dataset/model when they vary)")
    parser.add_argument("--title", default="", help="figure title")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: the first path)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    runs = find_runs(args.paths)
    if not runs:
        print(f"no metrics.json under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    split = lambda text: [k for k in (text or "").split(",") if k]  # noqa: E731
    by, metrics = (split(args.by) or None), split(args.metrics)
    pivot_keys = split(args.pivot)
    if args.pivot and len(pivot_keys) != 2:
        print("error: --pivot takes two keys, ROW_KEY,COL_KEY (e.g. method.name,method.compression)", file=sys.stderr)
        return 2
    asked = [*(by or []), *metrics, *pivot_keys, *[k for k in (args.tune, args.spread) if k]]
    asked += [k for k in [*split(args.series), *split(args.facet)]] + ([args.x] if args.x not in X_MODES else [])
    problem = check_keys(runs, asked)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if pivot_keys:
        by = list(dict.fromkeys([*pivot_keys, *(by or varying_keys([r for r in runs if r.get("status") not in INCOMPLETE]))]))
    text, rows, by, footnotes = build(runs, by, metrics, tune_key=args.tune, spread_key=args.spread,
                                      pivot_keys=pivot_keys or None, diverged_as_chance=args.diverged_as_chance)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    name = "table_tune" if args.tune else "table_spread" if args.spread else "table_pivot" if pivot_keys else "table"
    (out / f"{name}.md").write_text(text)
    write_csv(rows, out / f"{name}.csv")
    print(text, end="")
    for note in footnotes:
        if note.startswith("WARNING"):
            print(note, file=sys.stderr)
    counts = {s: sum(r.get("status") == s for r in runs) for s in (*FINISHED, "failed", *INCOMPLETE)}
    print(f"\n{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}); "
          f"wrote {out / (name + '.md')} and {out / (name + '.csv')}")
    if not args.no_plot and not args.tune and not args.spread:
        x = args.x
        facets = split(args.facet) or [k for k in FACET_KEYS if k in by]
        series = split(args.series) or [k for k in by if k not in facets and k != "method.compression" and k != x]
        files = plot(runs, out / "accuracy_vs_compression", x=x, series=series, facets=facets, metric=metrics[0],
                     title=args.title)
        if files:
            print("figure: " + ", ".join(map(str, files)))
    return 0
