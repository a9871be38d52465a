"""python -m sparse_exp.export <run dir> [--csr] [-o FILE]: a run's model as a plain state dict."""
from __future__ import annotations

import argparse
import sys

from sparse_exp.export.state_dict import export_run_state_dict


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse_exp.export", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("run_dir", help="a finished run directory (with compressed.npz)")
    parser.add_argument("--csr", action="store_true", help="pruned conv/linear weights as sparse CSR tensors")
    parser.add_argument("-o", "--out", help="output file (default <run dir>/state_dict[_csr].pt)")
    args = parser.parse_args(argv)
    try:
        path = export_run_state_dict(args.run_dir, args.csr, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
