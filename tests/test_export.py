"""The compressed model file rebuilds the trained model bit for bit; storage sizes of Table 3.2."""
from __future__ import annotations

import math

import json

import numpy as np
import pytest
import torch

from sparse_exp.export import load_compressed, read_header
from sparse_exp.export.storage import binary_entropy, storage_report
from sparse_exp.tracking.files import load_torch


@pytest.mark.parametrize(
    "method",
    [
        ["method=freezenet", "method.compression=0.95"],
        ["method=freezenet", "method.compression=0.95", "method.frozen_weight_decay=true"],
        ["method=snip", "method.compression=0.9"],
        ["method=dense"],
    ],
    ids=["freezenet", "freezenet_wd", "snip", "dense"],
)
def test_export_reload_is_bit_identical(run_experiment, method):
    metrics, run_dir = run_experiment(*method, "trainer.epochs=2")
    ckpt = load_torch(run_dir / "checkpoint.pt")
    best = ckpt["best_state"]
    model = load_compressed(run_dir / "compressed.npz")
    state = model.state_dict()
    assert set(state) == set(best)
    for k, v in best.items():
        assert torch.equal(state[k], v), k
    # logits of the rebuilt model equal those of the trained (early-stopping) model
    from sparse_exp.models.build import build_model
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml")
    trained = build_model(cfg, 10, (1, 28, 28), metrics["init_seed"])
    trained.load_state_dict(best)
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    trained.eval(), model.eval()
    assert torch.equal(trained(x), model(x))
    header = read_header(run_dir / "compressed.npz")
    assert header["init_seed"] == metrics["init_seed"]
    assert metrics["storage"]["file_kb"] > 0


def test_frozen_weights_come_from_the_seed_not_the_file(run_experiment):
    metrics, run_dir = run_experiment("method=freezenet", "method.compression=0.99", "trainer.epochs=1")
    with np.load(run_dir / "compressed.npz", allow_pickle=False) as z:
        stored_floats = sum(z[k].size for k in z.files if k.startswith(("kept", "frozen")))
    assert stored_floats == metrics["params"]["trainable_weights"]  # only trained weights are stored
    assert metrics["storage"]["compression_factor"] > 50


def test_loading_never_unpickles(run_experiment, tmp_path):
    _, run_dir = run_experiment("method=snip", "method.compression=0.9", "dry_run=true")
    with np.load(run_dir / "compressed.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["other0"] = np.array([object()], dtype=object)  # a pickled payload
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ValueError, match="pickle"):
        load_compressed(tmp_path / "evil.npz")


def test_table_3_2_sizes_for_lenet5():
    """LeNet-5-Caffe: 431,080 parameters = 1,683.9 kB; q = 0.99 keeps 4,305 weights + 580 biases
    = 19.1 kB, a compression factor of 88.2 (Table 3.2)."""
    masks = {"w": torch.zeros(430_500, dtype=torch.bool)}
    masks["w"][:4305] = True
    r = storage_report(431_080, 4305 + 580, masks, "freeze")
    assert r["dense_kb"] == pytest.approx(1683.9, abs=0.05)
    assert r["trained_values_kb"] == pytest.approx(19.1, abs=0.05)
    assert r["compression_factor"] == pytest.approx(88.2, abs=0.1)
    H = -0.01 * math.log2(0.01) - 0.99 * math.log2(0.99)  # eq. A.2 at p = 0.99 (= 0.0808 bits per entry)
    assert r["entropy_kb"] == pytest.approx((430_500 * H / 8 + 4 * 4885 + 4) / 1024)
    assert r["mask_values_kb"] == pytest.approx((430_500 / 8 + 4 * 4885 + 4) / 1024)
    # CSR of one row: values + column indices (4 B each per kept entry) + 2 row pointers
    assert r["csr_kb"] == pytest.approx((8 * 4305 + 8 + 4 * 580 + 4) / 1024)  # + the 4-byte seed
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == 0.0


def test_mask_entropy_eq_a2_hand_values():
    """S = -p log2 p - (1 - p) log2(1 - p) (eq. A.2), against values worked out by hand:
    S(1/4) = 2 - (3/4) log2 3, S(1/8) = 3 - (7/8) log2 7, symmetric in p, 0 for a constant mask."""
    assert binary_entropy(0.25) == pytest.approx(2 - 0.75 * math.log2(3), rel=1e-14)
    assert binary_entropy(0.75) == pytest.approx(2 - 0.75 * math.log2(3), rel=1e-14)
    assert binary_entropy(0.125) == pytest.approx(3 - 0.875 * math.log2(7), rel=1e-14)
    assert binary_entropy(0.25) == pytest.approx(0.8112781244591328, rel=1e-14)
    assert binary_entropy(1.0) == 0.0 and binary_entropy(0.0) == 0.0
    # per layer: n_l S(p_l) bits; a layer with density 1/4 (64 entries) and one with 1/2 (32 entries)
    a, b = torch.zeros(64, dtype=torch.bool), torch.zeros(4, 8, dtype=torch.bool)
    a[:16], b[:, :4] = True, True
    r = storage_report(96 + 10, 16 + 16 + 10, {"a": a, "b": b}, "prune")
    bits = 64 * (2 - 0.75 * math.log2(3)) + 32 * 1.0
    assert r["entropy_kb"] == pytest.approx((bits / 8 + 4 * 42) / 1024, rel=1e-12)
