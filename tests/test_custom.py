"""The user's own model and data (model=custom, dataset=custom): defined outside the package, run
from another directory through the command, and every method works on them."""
from __future__ import annotations

import json
import math
from fractions import Fraction
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO
from method_overrides import EXTRA
from sparse_exp.data.custom import split_sets
from sparse_exp.errors import ConfigError
from sparse_exp.export import load_compressed
from sparse_exp.methods import METHODS
from sparse_exp.tracking.files import load_torch

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """Not a model of the tables: a LayerNorm (no init rule), a 3x3 and a 1x1 conv, two Linears."""

        def __init__(self, num_classes, input_shape, width):
            super().__init__()
            c, h, w = input_shape
            self.features = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                          nn.Conv2d(width, width, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
            self.norm = nn.LayerNorm(4 * width)
            self.hidden = nn.Linear(4 * width, 16)
            self.out = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(self.norm(self.features(x).flatten(1)))))


    def build_net(num_classes, input_shape, width=4):
        return Net(num_classes, input_shape, width)


    def load(n=240, classes=3):
        g = torch.Generator().manual_seed(0)
        templates = torch.randn(classes, 1, 8, 8, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        x = templates[y] + 0.5 * torch.randn(n, 1, 8, 8, generator=g)
        return torch.utils.data.TensorDataset(x[:200], y[:200]), (x[200:], y[200:])
''')

CUSTOM = ["model=custom", "model.target=user_nets:build_net", "+model.kwargs.width=6",
          "dataset=custom", "dataset.target=user_nets:load", "trainer.batch_size=40", "trainer.eval_batch_size=100",
          "trainer.log_every=2", "trainer.threads=1", "trainer.lr=0.05"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project directory with its own module, the working directory of the test."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "user_nets.py").write_text(USER_MODULE)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("user_nets", None)


def test_outside_model_and_data_run_through_the_command_from_another_directory(project):
    """The installed `sparse-exp` script (not `python -m`), typed in the user's project directory:
    the module next to it is imported, trained with FreezeNet in the interspace, and the compressed
    model reloads to the trained state."""
    script = Path(sys.executable).with_name("sparse-exp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([str(script), *CUSTOM, "method=freezenet", "method.compression=0.8", "sharing=fine",
                           "init=standard", "trainer.epochs=1", "hydra.run.dir=run"],
                          cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((project / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    names = [layer["name"] for layer in metrics["layers"]]
    # the 3x3 conv is in the interspace (coefficients), the 1x1 conv and the Linears stay spatial
    assert names == ["features.0.coeff", "features.3.weight", "hidden.weight", "out.weight"], names
    assert metrics["config"]["model"]["kwargs"] == {"width": 6}
    model = load_compressed(project / "run" / "compressed.npz")
    best = load_torch(project / "run" / "checkpoint.pt")["best_state"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


# One method of each kind in the default suite (the others share their code paths); all with -m slow.
FAST = ("freezenet", "g_cops", "ip", "rigl", "gmp", "lth", "ft")


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in METHODS.names()])
def test_every_method_runs_on_the_custom_model_and_data(project, make_cfg, name):
    from sparse_exp import experiment

    cfg = make_cfg(*CUSTOM, f"method={name}", "trainer.epochs=1", "trainer.max_steps_per_epoch=4",
                   *(["sharing=fine", "init=standard"] if name == "ip" else []),
                   *[o for o in EXTRA.get(name, []) if not o.startswith("sharing")])
    metrics = experiment.run(cfg, project / name)
    assert metrics["status"] == "completed", metrics
    q, p = metrics["config"]["method"]["compression"], metrics["params"]
    kept = math.floor((1 - Fraction(str(q))) * p["total_weights"])  # exact, not the code's float formula
    assert 0 < p["trainable_weights"] <= kept if "cops" in name else p["trainable_weights"] == kept
    assert metrics["flops"]["dense"] > 0


def test_custom_model_declarations_default_to_one_basis_per_conv_and_the_last_linear():
    from sparse_exp.models.custom import declare_defaults

    net = declare_defaults(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 5), nn.Flatten(),
                                         nn.Linear(8, 4), nn.Linear(4, 2)))
    assert net.medium_groups == {"0": 0, "2": 1} and net.classifier_name == "5" and net.fb_exempt == frozenset()


def test_custom_dataset_forms():
    x, y = torch.arange(24.0).reshape(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    as_tuple = split_sets((x[:4], y[:4], x[4:], y[4:]))
    as_dict = split_sets({"train": torch.utils.data.TensorDataset(x[:4], y[:4]), "test": (x[4:], y[4:])})
    for a, b in zip(as_tuple, as_dict):
        assert torch.equal(a, b)
    assert as_tuple[0].shape == (4, 4, 1, 1)  # vectors: one channel per feature
    images = split_sets(((torch.zeros(3, 5, 5, dtype=torch.uint8), y[:3]), (torch.zeros(2, 5, 5), y[:2])))
    assert images[0].shape == (3, 1, 5, 5) and images[0].dtype == torch.uint8 and images[2].dtype == torch.float32
    with pytest.raises(ConfigError, match="dataset.target: 3 training inputs but 2 labels"):
        split_sets(((torch.zeros(3, 5, 5), y[:2]), (torch.zeros(2, 5, 5), y[:2])))
    with pytest.raises(ConfigError, match=r"dataset.target must return \(train, test\)"):
        split_sets(torch.zeros(3))


@pytest.mark.parametrize("target, needle", [
    (None, "model.target must name a callable as module:function"),
    ("no_such_module_xyz:f", "model.target: cannot import 'no_such_module_xyz' (ModuleNotFoundError"),
    ("user_nets:missing", "model.target: 'user_nets' has no callable 'missing'"),
])
def test_bad_model_target_is_one_sentence_before_training(project, make_cfg, target, needle):
    from sparse_exp.config.validate import validate

    cfg = make_cfg(*CUSTOM, *([f"model.target={target}"] if target else ["model.target=null"]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(needle)
