"""metrics.json's compression figures and warnings, by hand on LeNet-5-Caffe (431,080 parameters, 430,500
prunable weights, 580 biases; Table 3.2): q over the prunable weights, q_beta over all parameters
(thesis 3.3.3.1), and the fully pruned/frozen layers (`empty_layers`, logged as a warning)."""
from __future__ import annotations

import logging

import pytest
import torch

from sparse_exp.sparsity.mask import Mask
from sparse_exp.tracking.metrics import build_metrics, compression_of, parameter_counts
from test_dst import build_session


def _first_k(session, k: int) -> Mask:
    keep = torch.zeros(session.mask.numel(), dtype=torch.bool)
    keep[:k] = True
    return Mask.from_flat(keep, session.params)


@pytest.mark.parametrize("mode", ["prune", "freeze"])
def test_q_and_q_beta_of_table_3_2(make_cfg, tmp_path, mode):
    """q = 0.99 keeps 4,305 of 430,500 weights; with the 580 biases 4,885 of 431,080 parameters are trained,
    so q_beta = 1 - 4,885 / 431,080 = 0.988668... for SNIP (pruned) and FreezeNet (frozen) alike."""
    session = build_session(make_cfg, tmp_path, "method=dense")
    session.set_mask(_first_k(session, 4305), mode)
    params = parameter_counts(session)
    assert (params["total"], params["trainable"], params["total_weights"], params["trainable_weights"]) == \
           (431_080, 4_885, 430_500, 4_305)
    c = compression_of(params)
    assert c["q"] == pytest.approx(0.99, rel=1e-12)
    assert c["q_beta"] == pytest.approx(426_195 / 431_080, rel=1e-12) and c["q_beta"] < c["q"]
    assert c["q_with_bases"] == pytest.approx(c["q"], rel=1e-12)  # no filter bases in the spatial model


def test_dense_run_has_q_beta_zero(make_cfg, tmp_path):
    session = build_session(make_cfg, tmp_path, "method=dense")
    c = compression_of(parameter_counts(session))
    assert c == {"q": 0.0, "q_beta": 0.0, "q_with_bases": 0.0}


def test_empty_layers_are_reported_and_warned(make_cfg, tmp_path, caplog):
    """A layer left without any trained weight is listed in metrics.json and logged as a warning;
    a layer with a single kept weight is not empty."""
    session = build_session(make_cfg, tmp_path, "method=dense")
    session.is_writer = True  # log like rank 0
    names = list(session.params)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in session.params.items()}
    masks[names[0]] = torch.zeros_like(masks[names[0]])  # conv1: nothing left
    masks[names[2]] = torch.zeros_like(masks[names[2]])  # fc1: nothing left
    masks[names[1]] = torch.zeros_like(masks[names[1]])
    masks[names[1]].view(-1)[5] = True  # conv2: one weight left
    caplog.set_level(logging.INFO, logger="sparse_exp")
    session.set_mask(Mask(masks), "prune")
    m = build_metrics(session, "completed", {}, {}, 0.0)
    assert m["empty_layers"] == [names[0], names[2]]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("WARNING: layer")]
    assert warned == [f"WARNING: layer {names[0]} is fully pruned (no trained weight left)",
                      f"WARNING: layer {names[2]} is fully pruned (no trained weight left)"]
    session.set_mask(Mask(masks), "freeze")
    assert any(f"layer {names[0]} is fully frozen" in r.getMessage() for r in caplog.records)
    session.set_mask(Mask.ones(session.params), "prune")
    assert build_metrics(session, "completed", {}, {}, 0.0)["empty_layers"] == []
    assert Mask({"a": torch.zeros(0, dtype=torch.bool), "b": torch.tensor([False, True])}).empty_layers() == []
