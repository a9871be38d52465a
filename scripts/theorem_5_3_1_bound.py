"""Theorem 5.3.1's bound (eq. 5.4; IP appendix eq. A.85): the probability that IP, keeping SP's
magnitude support and training the basis, approximates a layer strictly better than SP is at least
1 - eps (sparse_exp/measure/theory.py). Computed per KxK layer of trained networks (their mask.npz),
or, with --grid, for n filters of 3x3 over pruning rates p as in Figs. 5.3 / A9.

    python scripts/theorem_5_3_1_bound.py outputs/<run> [more runs...]
    python scripts/theorem_5_3_1_bound.py --grid --filters 10 100 1000

eps is printed as log10 (-inf: eps = 0, the kept count is not a multiple of K^2; null in the JSON of
the last line).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from sparse_exp.measure.theory import log10_epsilon, mask_bounds
from sparse_exp.sparsity.mask import Mask


def grid(filters, ps, d1: int = 9) -> list[dict]:
    rows = []
    for n in filters:
        for p in ps:
            kept = round((1 - p) * d1 * n)
            if not 0 < kept < d1 * n:
                continue
            # the worst case next to this p: the nearest kept count that K^2 divides
            nearest = max(d1, min(d1 * (n - 1), d1 * round(kept / d1)))
            rows.append({"filters": n, "p": p, "kept": kept, "log10_eps": log10_epsilon(d1, n, kept),
                         "log10_eps_nearest_multiple": log10_epsilon(d1, n, nearest)})
    return rows


def finite(x):
    """-inf (eps = 0) as null, so the last line is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def fmt(x) -> str:
    return "n/a" if x is None else ("-inf" if x == -math.inf else f"{x:.1f}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run directories (or mask.npz files)")
    ap.add_argument("--grid", action="store_true", help="n filters of 3x3 over pruning rates (Figs. 5.3 / A9)")
    ap.add_argument("--filters", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--p", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
    args = ap.parse_args(argv)
    result: dict = {}
    if args.grid:
        result["grid"] = grid(args.filters, args.p)
        print(f"{'filters':>8} {'p':>6} {'log10 eps':>10} {'at nearest multiple of 9':>25}")
        for r in result["grid"]:
            print(f"{r['filters']:>8} {r['p']:>6} {fmt(r['log10_eps']):>10} {fmt(r['log10_eps_nearest_multiple']):>25}")
    for run in args.runs:
        path = Path(run)
        path = path / "mask.npz" if path.is_dir() else path
        rows = mask_bounds(Mask.load(path).masks)
        result[str(run)] = rows
        print(f"{run}:")
        print(f"  {'layer':<32} {'D1':>4} {'D2':>9} {'kept':>10} {'density':>8} {'log10 eps':>10}")
        for r in rows:
            print(f"  {r['name']:<32} {r['D1']:>4} {r['D2']:>9,} {r['kept']:>10,} {r['density']:8.4f} {fmt(r['log10_eps']):>10}")
    print(json.dumps(finite(result)))
    return result


if __name__ == "__main__":
    main()
