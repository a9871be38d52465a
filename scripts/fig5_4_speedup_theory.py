"""Fig. 5.4: theoretical speed-ups of one sparse SP and IP convolution over the dense one, for a layer
close to the input (few channels) and one close to the output (many channels). From eq. 5.15:
SP 1 / (1 - q), IP c_out / (c_out (1 - q) + K^2) (sparse_exp/measure/theory.py); the feature-map size
cancels. The two channel counts are ours (VGG-16's first and last layers: 64 and 512 outputs).

    python scripts/fig5_4_speedup_theory.py                       # table for c_out = 64 and 512, K = 3
    python scripts/fig5_4_speedup_theory.py --out fig5_4          # also fig5_4.csv and fig5_4.png
    python scripts/fig5_4_speedup_theory.py --c-out 128 --kernel 5 --dict-size 16

The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import csv
import json

from sparse_exp.measure.theory import speedups

DEFAULT_Q = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def curves(c_outs, kernel: int, qs, dict_size=None) -> list[dict]:
    rows = []
    for c_out in c_outs:
        for q in qs:
            sp, ip = speedups(kernel, c_out, q, dict_size)
            rows.append({"c_out": c_out, "kernel": kernel, "q": q, "sp_speedup": sp, "ip_speedup": ip, "ip_over_sp_flops": sp / ip})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c-out", type=int, nargs="+", default=[64, 512], help="output channels per scenario")
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--dict-size", type=int, default=None, help="n# of a dictionary (default K^2, a basis)")
    ap.add_argument("--q", type=float, nargs="+", default=list(DEFAULT_Q))
    ap.add_argument("--out", default=None, help="write <out>.csv and <out>.png")
    args = ap.parse_args(argv)
    rows = curves(args.c_out, args.kernel, args.q, args.dict_size)
    print(f"{'c_out':>6} {'q':>7} {'SP x':>9} {'IP x':>9} {'IP/SP FLOPs':>12}")
    for r in rows:
        print(f"{r['c_out']:>6} {r['q']:>7} {r['sp_speedup']:9.2f} {r['ip_speedup']:9.2f} {r['ip_over_sp_flops']:12.3f}")
    if args.out:
        with open(f"{args.out}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.c_out), figsize=(5 * len(args.c_out), 4), squeeze=False)
        for ax, c_out in zip(axes[0], args.c_out):
            mine = [r for r in rows if r["c_out"] == c_out]
            ax.plot([r["q"] for r in mine], [r["sp_speedup"] for r in mine], "o-", label="SP")
            ax.plot([r["q"] for r in mine], [r["ip_speedup"] for r in mine], "s-", label="IP")
            ax.set_yscale("log")
            ax.set_xlabel("compression rate q")
            ax.set_ylabel("theoretical speed-up over dense")
            ax.set_title(f"c_out = {c_out}, K = {args.kernel}")
            ax.legend()
        fig.tight_layout()
        fig.savefig(f"{args.out}.png", dpi=120)
    result = {"kernel": args.kernel, "dict_size": args.dict_size, "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
