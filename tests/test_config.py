"""Every config option composes and validates; bad input gives one sentence naming the key."""
from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from sparse_exp.cli import CONF_DIR, GROUPS, check_group_choices, group_options
from sparse_exp.config.overrides import check_overrides, sweep_keys
from sparse_exp.config.validate import validate, validate_model_fits
from sparse_exp.data import DATASETS
from sparse_exp.errors import ConfigError
from sparse_exp.layers.sharing import SHARING_SCHEMES
from sparse_exp.methods import METHODS
from sparse_exp.models import MODELS
from sparse_exp.models.init import INITS


def test_group_files_match_registries():
    """The CLI word, the YAML file name and the registry key are the same string."""
    assert group_options("dataset") == DATASETS.names()
    assert group_options("model") == MODELS.names()
    assert group_options("method") == METHODS.names()
    assert group_options("sharing") == SHARING_SCHEMES.names()
    weight_inits = {p.stem for p in (CONF_DIR / "init").glob("*.yaml")}
    assert set(INITS.names()) <= weight_inits


def _compatible(group: str, option: str) -> list[str]:
    extra = []
    if group == "method" and METHODS.get(option).interspace == "required":
        extra.append("sharing=coarse")
    if option == "custom":  # model=custom / dataset=custom need an importable callable (validate imports it)
        extra.append(f"{group}.target=torch.nn:Identity")
    return extra


# Every option composing and validating, and every preset's content against Tables A.9-A.11: test_presets.py.


def test_default_config(make_cfg):
    cfg = make_cfg()
    assert (cfg.dataset.name, cfg.model.name) == ("fashion_mnist", "lenet5")
    validate(cfg)


def test_command_line_beats_preset(make_cfg):
    cfg = make_cfg("experiment=a9_vgg16_cifar10", "method=freezenet", "trainer.epochs=7")
    assert cfg.model.name == "vgg16" and cfg.trainer.name == "snip_cifar10" and cfg.method.name == "freezenet"
    assert cfg.trainer.epochs == 7 and cfg.trainer.lr_every_iters == 30000


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["method.compression=1.5", "method=dense"], "method.compression"),
        (["trainer.lr=-1"], "trainer.lr"),
        (["trainer.epochs=0"], "trainer.epochs"),
        (["trainer.momentum=1.0"], "trainer.momentum"),
        (["trainer.precision=fp8"], "trainer.precision"),
        (["dataset.val_fraction=1.0"], "dataset.val_fraction"),
        (["device=tpu"], "device"),
        (["model.name=alexnet"], "model.name"),
        (["dataset.name=svhn"], "dataset.name"),
        (["init.weights=orthogonal"], "init.weights"),
        (["init.basis=haar"], "init.basis"),
        (["resume=/nonexistent/run"], "resume"),
    ],
)
def test_bad_values_name_the_key(make_cfg, overrides, key):
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert key in message and "\n" not in message


def test_dense_rejects_compression(make_cfg):
    with pytest.raises(ConfigError, match="method.compression"):
        validate(make_cfg("method=dense", "method.compression=0.5"))


def test_wrong_type_and_unknown_key_are_rejected_by_the_schema(make_cfg):
    with pytest.raises((ValidationError, ConfigCompositionException)) as err:
        make_cfg("trainer.epochs=many")
    assert "epochs" in str(err.value)
    with pytest.raises((ValidationError, ConfigCompositionException)) as err:
        make_cfg("trainer.epoch=3")
    assert "epoch" in str(err.value)


def test_model_must_fit_dataset(make_cfg):
    cfg = make_cfg("model=vgg16")
    with pytest.raises(ConfigError, match=r"model=vgg16 .* takes 3x32x32 inputs but dataset=fashion_mnist gives 1x28x28"):
        validate_model_fits(cfg, (1, 28, 28))
    validate_model_fits(make_cfg("model=vgg16", "dataset=cifar10"), (3, 32, 32))


def test_unknown_group_option_is_one_sentence():
    msg = check_group_choices(["method=copz"])  # the closest options, not all 19
    assert msg == "method: unknown option 'copz'; did you mean cops?"
    msg = check_group_choices(["method=zzz"])  # none is close: all of them
    assert msg.startswith("method: unknown option 'zzz'; choose one of: cops, dense,") and msg.endswith("usnip")
    assert check_group_choices(["experiment=a10_cops_vgg16_cifar1"]).endswith("did you mean a10_cops_vgg16_cifar10 or a10_vgg16_cifar10?")
    msg = check_group_choices(["experiment=zzz"])  # the presets are too many to list in a sentence
    assert msg.startswith("experiment: unknown option 'zzz'; none is close; `sparse-exp --help` lists all")
    assert check_group_choices(["method=dense", "seed=1"]) is None
    assert "snap" in check_group_choices(["method=dense,snap"])


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["method=snip", "method.criterion=grasp"],
         "method.criterion: no such key in method (method=snip); the keys there are: name, compression,"),
        (["experiment=a10_cops_vgg16_cifar10", "method.bogus=1"],  # the preset selects method=g_cops
         "method.bogus: no such key in method (method=g_cops); the keys there are: name, compression,"),
        (["trainer.epoch=3"], "trainer.epoch: no such key in trainer (trainer=demo); did you mean trainer.epochs?"),
        (["sed=1"], "sed: no such key in the top level; did you mean seed?"),
        (["colour=1"], "colour: no such key in the top level; the keys there are: dataset,"),
        (["+trainer.epoch=3"], "trainer.epoch: no such key in trainer (trainer=demo)"),  # `+` would add an unread key
        (["trainer.epochs=many"], "trainer.epochs: Value 'many' of type 'str' could not be converted to Integer"),
        (["-m", "method.compression=0.9,0.99", "method.bogus=1,2"], "method.bogus: no such key in method (method=freezenet)"),
        (["method=copz"], "method: unknown option 'copz'; did you mean cops?"),
        (["model=custom", "model.kwarg.width=3"], "model.kwarg.width: no such key in model (model=custom); did you mean model.kwargs?"),
    ],
)
def test_bad_override_is_one_sentence_naming_key_and_allowed(make_cfg, argv, expected):
    msg = check_overrides(argv, lambda overrides: make_cfg(*overrides))
    assert msg is not None and msg.startswith(expected) and "\n" not in msg


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["method=cops", "method.alpha=0.5", "trainer.lr_milestones=[3,4]", "dataset=synthetic", "dataset.shape=[1,28,28]"],
        ["-m", "method.compression=0.9,0.99", "seed=0,1"],
        ["-m", "method=snip,freezenet", "method.criterion=grasp"],  # exists for one of them: Hydra decides
        ["-m", "experiment=a9_lenet5_mnist,a10_cops_lenet5_mnist", "method.alpha=0.1"],
    ],
)
def test_good_or_undecidable_overrides_pass(make_cfg, argv):
    calls = []

    def compose(overrides):
        calls.append(overrides)
        return make_cfg(*overrides)

    assert check_overrides(argv, compose) is None
    assert len(calls) <= 1  # one composition at most when nothing is wrong


def test_sweep_keys_tell_lists_from_sweeps():
    argv = ["-m", "method.compression=0.9,0.99", "dataset.shape=[1,28,28]", "+seed=range(3)", "model=lenet5"]
    assert sweep_keys(argv) == ["method.compression", "seed"]


def test_preset_may_set_top_level_keys(make_cfg, tmp_path):
    """Presets are applied after config.yaml's own values (its `_self_` comes first)."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "probe.yaml").write_text("# @package _global_\nseed: 7\ndry_run: true\n")
    cfg = make_cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=probe")
    assert cfg.seed == 7 and cfg.dry_run is True
    assert make_cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=probe", "seed=3").seed == 3
