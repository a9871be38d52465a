"""The Python API (sparse_exp/api.py): the README's example runs as written, and its pieces keep
the mask guarantees."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from conftest import REPO
from sparse_exp import api
from sparse_exp.errors import ConfigError


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- api-example.*?-->\n```python\n(.*?)```\n<!-- /api-example -->", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.replace('"trainer.epochs=2"', '"trainer.epochs=1", "dataset.size=300"'), "README", "exec"), namespace)
    run, mask, result, metrics = (namespace[k] for k in ("run", "mask", "result", "metrics"))
    assert result.status == "completed" and metrics["status"] == "completed"
    assert mask.kept() == int(0.1 * mask.numel())  # floor((1 - q) D)
    for name, p in run.params.items():  # pruned weights stayed exactly zero through the training
        assert torch.count_nonzero(p.detach()[~run.mask.masks[name].to(p.device)]) == 0, name
    assert "test accuracy" in capsys.readouterr().out
    obj = torch.load(tmp_path / "pruned.pt", weights_only=True)
    assert obj["layout"] == "csr" and obj["normalization"]["mean"]


def test_apply_mask_on_a_plain_model_and_bad_scoring_option():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    cfg = api.config("dataset=synthetic", "dataset.shape=[1,2,2]", "dataset.size=40", "dataset.test_size=10",
                     "method=dense", "trainer.epochs=1")
    run = api.build(cfg, model=net)
    mask = api.compute_mask(run, "magnitude", compression=0.5)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    plain.load_state_dict(net.state_dict())
    api.apply_mask(plain, mask)
    assert int((plain[1].weight != 0).sum()) == 6 and torch.equal(plain[1].weight != 0, mask.masks["1.weight"])
    with pytest.raises(ConfigError, match="compute_mask: unknown scoring option score_batch"):
        api.compute_mask(run, "snip", score_batch=3)
    with pytest.raises(ConfigError, match="method: unknown option 'snp'; did you mean snip"):
        api.config("method=snp")
