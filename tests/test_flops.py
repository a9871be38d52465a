"""Theoretical FLOPs of SP and IP (IP appendix D.1, eqs. A.7/A.8, thesis eq. 5.15) and what a run
writes to metrics.json (flops, params.basis, q_with_bases, interspace)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch.nn.functional as F
import torch
from torch import nn

from sparse_exp.experiment import run
from sparse_exp.layers.interspace import to_interspace
from sparse_exp.measure.flops import flops_summary, ip_over_sp, layer_flops
from sparse_exp.measure.storage import coefficient_compression, q_with_bases
from sparse_exp.models import declare
from tests.conftest import TINY


class Tiny(nn.Module):
    """conv1: 2 -> 3, 3x3, stride 2, padding 1 on 7x7 -> 4x4; conv2: 3 -> 4, 3x3, no padding -> 2x2;
    fc: 16 -> 5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv2(F.relu(self.conv1(x)))), 1))


SHAPE = (2, 7, 7)
DENSITY = {"conv1.weight": 0.5, "conv2.weight": 0.25, "fc.weight": 0.1}


def tiny(scheme="none", nc=1, dict_size=None):
    model = declare(Tiny(), medium_groups={"conv1": 0, "conv2": 0}, classifier_name="fc")
    cfg = SimpleNamespace(name=scheme, nc=nc, dict_size=dict_size, basis_weight_decay=False)
    return to_interspace(model, cfg, "random")


def ip_densities(d):
    return {k.replace("conv1.weight", "conv1.coeff").replace("conv2.weight", "conv2.coeff"): v for k, v in d.items()}


def test_sp_flops_by_hand_with_stride_and_padding():
    rows = {r["name"]: r for r in layer_flops(tiny(), SHAPE, DENSITY)}
    assert rows["conv1"]["out"] == (4, 4) and rows["conv2"]["out"] == (2, 2)
    assert rows["conv1"]["dense"] == 2 * 3 * 2 * 9 * 16 == 1728
    assert rows["conv2"]["dense"] == 2 * 4 * 3 * 9 * 4 == 864
    assert rows["fc"]["dense"] == 2 * 16 * 5 == 160
    s = flops_summary(tiny(), SHAPE, DENSITY)
    assert s["dense"] == 2752
    assert s["sparse"] == pytest.approx(0.5 * 1728 + 0.25 * 864 + 0.1 * 160)  # eq. A.7
    assert s["speedup"] == pytest.approx(2752 / 1096) and s["overhead"] == 0


@pytest.mark.parametrize("scheme,nc,bases", [("fine", 1, (1, 1)), ("in_nc", 1, (1, 1)), ("out_nc", 2, (2, 2)), ("coarse", 1, (1, 1))])
def test_ip_flops_by_hand(scheme, nc, bases):
    """Eq. A.8: 2 c_out c_in K^2 d1 d2 (1 - q) + 2 c_in K^4 d1 d2; out_nc multiplies the overhead
    by ceil(c_out / nc) (section 5.5.3.3), in_nc does not."""
    s = flops_summary(tiny(scheme, nc), SHAPE, ip_densities(DENSITY))
    overhead = bases[0] * 2 * 2 * 81 * 16 + bases[1] * 2 * 3 * 81 * 4
    assert s["overhead"] == overhead
    assert s["sparse"] == pytest.approx(1096 + overhead)
    assert s["dense"] == 2752  # the dense SP network is the baseline of every speed-up


def test_dictionary_scales_the_interspace_terms_by_n_over_k2():
    s = flops_summary(tiny("fine", dict_size=5), SHAPE, ip_densities(DENSITY))
    conv = 2 * 3 * 2 * 5 * 16 * 0.5 + 2 * 4 * 3 * 5 * 4 * 0.25
    overhead = 2 * 2 * 5 * 9 * 16 + 2 * 3 * 5 * 9 * 4
    assert s["sparse"] == pytest.approx(conv + overhead + 16)


def test_dense_overhead_is_k2_over_c_out_and_eq_5_15():
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(64, 128, 3, padding=1)
            self.fc = nn.Linear(1, 1)

        def forward(self, x):
            return self.conv(x)

    def one(scheme):
        cfg = SimpleNamespace(name=scheme, nc=1, dict_size=None, basis_weight_decay=False)
        return to_interspace(declare(One(), medium_groups={"conv": 0}, classifier_name="fc"), cfg, "standard")

    shape = (64, 8, 8)
    sp, ip = layer_flops(one("none"), shape)[0], layer_flops(one("fine"), shape)[0]
    assert ip["sparse"] / sp["sparse"] == pytest.approx(1 + 9 / 128)  # appendix D.1: K^2 / c_out
    for q in (0.5, 0.9, 0.99):
        sp_q = layer_flops(one("none"), shape, {"conv.weight": 1 - q, "fc.weight": 1.0})[0]
        ip_q = layer_flops(one("fine"), shape, {"conv.coeff": 1 - q, "fc.weight": 1.0})[0]
        assert ip_q["sparse"] / sp_q["sparse"] == pytest.approx(1 + 9 / (128 * (1 - q)))  # eq. 5.15
        assert ip_over_sp(3, 128, q) == pytest.approx(ip_q["sparse"] / sp_q["sparse"])


def test_storage_helpers():
    assert q_with_bases(10, 100, 5, 5) == pytest.approx(1 - 15 / 105)
    q = coefficient_compression(0.9, 1000, 20)  # kept (1 - 0.9) * 1020 - 20 = 82 coefficients
    assert q == pytest.approx(1 - 82 / 1000)
    assert q_with_bases(round((1 - q) * 1000), 1000, 20, 20) == pytest.approx(0.9)


def test_runs_write_flops_bases_and_interspace_metrics(make_cfg, tmp_path):
    common = [*TINY, "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "method=snip", "method.compression=0.9", "init=standard"]
    sp = run(make_cfg(*common, "sharing=none"), tmp_path / "sp")
    ip = run(make_cfg(*common, "sharing=fine"), tmp_path / "ip")
    assert sp["params"]["basis"] == 0 and sp["compression"]["q_with_bases"] == pytest.approx(sp["compression"]["q"])
    assert ip["params"]["basis"] == 2 * 25 * 25  # LeNet-5: two 5x5 convs, fine sharing
    p = ip["params"]
    expected = 1 - (p["trainable_weights"] + p["trainable_basis"]) / (p["total_weights"] + p["basis"])
    assert ip["compression"]["q_with_bases"] == pytest.approx(expected)
    assert ip["compression"]["q"] == pytest.approx(sp["compression"]["q"])
    assert sp["flops"]["dense"] == ip["flops"]["dense"] and sp["flops"]["overhead"] == 0
    assert ip["flops"]["overhead"] == 2 * 1 * 625 * 24 * 24 + 2 * 20 * 625 * 8 * 8  # eq. A.8 overhead per layer
    assert sp["flops"]["speedup"] > 1 and [r["name"] for r in ip["flops"]["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    info = ip["interspace"]
    assert info["sharing"] == "fine" and info["bases"] == {"conv1": 625, "conv2": 625} and info["fb_layers"] == 2
    assert 0 <= info["cos_sim"]["conv1"] <= 1 and info["spatial_density"] > 0
    assert "interspace" not in sp


def test_csr_simulation_of_sparse_inference():
    """Appendix D.4: a conv as a CSR (c_out d1 d2 x c_in K^2) matrix; every filter's pattern repeats
    over its output positions."""
    import numpy as np

    from sparse_exp.measure.speedup import filter_csr, time_dense, time_sparse

    rng = np.random.default_rng(0)
    a = filter_csr(4, 18, 3, 0.5, rng)
    assert a.shape == (12, 18) and a.nnz == 12 * 9
    pattern = a.toarray() != 0
    assert (pattern[0] == pattern[2]).all() and (pattern[3] == pattern[5]).all()
    geometry = [dict(name="c", kind="conv", c_in=4, c_out=8, kernel=3, positions=16),
                dict(name="l", kind="linear", c_in=32, c_out=10, kernel=1, positions=1)]
    assert time_dense(geometry, 2, rng) > 0
    sp_s, ip_s = time_sparse(geometry, [0.5, 0.1], 2, rng)
    assert sp_s > 0 and ip_s > 0


@pytest.mark.slow
def test_sparse_speedup_script_quick():
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "sparse_speedup.py"), "--quick"], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    row = result["rows"][0]
    assert row["p"] == 0.9 and row["sp_theory"] == pytest.approx(10.0) and row["ip_theory"] < row["sp_theory"]
    assert row["dense_ms"] > 0 and row["sp_ms"] > 0 and row["ip_ms"] > 0
