"""Export a trained run as an ordinary spatial PyTorch model (sparse_exp/export/spatial.py).

Reads <run>/compressed.npz (the early-stopping model, rebuilt bit for bit), turns every filter-basis
convolution of an interspace run into the nn.Conv2d with the composed filters W = sum_n beta_n F(n),
and writes a state dict with the keys of the spatial architecture:

    python scripts/export_spatial.py outputs/<run> [--out spatial.pt]

Load it with:
    from sparse_exp.models import MODELS
    model = MODELS.get("<model>").build(<num_classes>, <input_shape>); model.load_state_dict(torch.load("spatial.pt"))

The last line printed is JSON (model, classes, input shape, largest output difference on a random batch).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sparse_exp.export import COMPRESSED, load_compressed, read_header
from sparse_exp.export.spatial import to_spatial


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory (or its compressed.npz)")
    ap.add_argument("--out", default=None, help="output file (default <run>/spatial_model.pt)")
    args = ap.parse_args(argv)
    path = Path(args.run)
    path = path / COMPRESSED if path.is_dir() else path
    header = read_header(path)
    model = load_compressed(path).eval()
    spatial = to_spatial(model).eval()
    x = torch.randn(4, *header["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((spatial(x) - model(x)).abs().max())
    out = Path(args.out) if args.out else path.parent / "spatial_model.pt"
    torch.save(spatial.state_dict(), out)
    result = {"model": header["model"]["name"], "num_classes": header["num_classes"],
              "input_shape": header["input_shape"], "sharing": header["sharing"]["name"], "out": str(out),
              "max_abs_output_difference": diff}
    print(f"{result['model']} ({result['sharing']} sharing) -> spatial state dict {out}; outputs agree to {diff:.2e}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
