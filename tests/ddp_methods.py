"""Run every registered method in one torchrun job (tests/test_distributed.py starts it):

    torchrun --nproc_per_node=2 tests/ddp_methods.py <out dir>

Each method trains a few steps on tiny synthetic data through experiment.run, rank 0 writing
<out>/<method>/metrics.json; every rank writes <out>/rank<r>.json with the final mask hash it
holds per method. Then two checks of the mask agreement itself: a method whose mask depends on the
rank (the broadcast must make the ranks agree) and a direct hash mismatch (must raise).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

import sparse_exp.cli as cli
from sparse_exp import distributed, experiment
from sparse_exp.methods import METHODS
from sparse_exp.methods.base import Method, register_method
from sparse_exp.sparsity.select import global_mask, kept_count

from method_overrides import EXTRA

BASE = ["dataset=synthetic", "dataset.shape=[1,28,28]", "dataset.size=200", "dataset.test_size=40", "model=lenet5",
        "trainer.epochs=1", "trainer.batch_size=45", "trainer.eval_batch_size=25", "trainer.log_every=2",
        "trainer.threads=1", "device=cpu"]
@register_method("rank_dependent")
class RankDependent(Method):
    """Each rank computes a different mask (random scores seeded with the rank)."""

    def prepare(self, session) -> None:
        gen = torch.Generator().manual_seed(1000 + distributed.rank())
        scores = {n: torch.rand(p.shape, generator=gen) for n, p in session.params.items()}
        total = sum(p.numel() for p in session.params.values())
        session.set_mask(global_mask(scores, kept_count(0.9, total)), mode="prune")


def compose_cfg(*overrides: str):
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def main() -> None:
    out = Path(sys.argv[1])
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    distributed.init()
    cli._register_schemas()
    rank = distributed.rank()
    hashes = {}
    for name in only or [n for n in METHODS.names() if n != "rank_dependent"]:
        cfg = compose_cfg(*BASE, f"method={name}", *EXTRA.get(name, []))
        metrics = experiment.run(cfg, out / name, choices={"method": name}, is_writer=distributed.is_main())
        hashes[name] = metrics["mask_sha256"]
    # by construction: rank 0's mask wins even when the ranks computed different ones
    cfg = compose_cfg(*BASE, "method=dense")
    cfg.method.name = "rank_dependent"
    metrics = experiment.run(cfg, out / "rank_dependent", is_writer=distributed.is_main())
    hashes["rank_dependent"] = metrics["mask_sha256"]
    # by check: different hashes stop the run
    try:
        distributed.check_same(f"{rank}-hash", "in the self-test")
        error = None
    except distributed.MaskMismatchError as exc:
        error = str(exc)
    (out / f"rank{rank}.json").write_text(json.dumps({"hashes": hashes, "mismatch_error": error}))
    distributed.shutdown()


if __name__ == "__main__":
    main()
