"""Every experiment preset holds the setup of the paper table it cites, written out here by hand from
thesis Tables A.9-A.11 (never read back from the presets), and composes and validates.

A preset is checked against its column (dataset, epochs, batch size, optimizer, learning rate, decay,
warm-up, weight decay, label smoothing, initialisation where the table gives one) and against the
model, method and sharing the figure or table it reproduces uses."""
from __future__ import annotations

from hydra import compose, initialize_config_module

import sparse_exp.cli as cli
from sparse_exp.cli import GROUPS, group_options
from sparse_exp.config.validate import validate

from test_config import _compatible

MNIST = dict(dataset="mnist", epochs=250, batch_size=100, lr=0.1, momentum=0.9, lr_gamma=0.1, lr_every_iters=25_000,
             lr_milestones=[], warmup_epochs=0.0, weight_decay=5e-4, label_smoothing=0.0)
CIFAR10 = dict(MNIST, dataset="cifar10", epochs=250, batch_size=128, lr_every_iters=30_000)
COLUMNS = {
    # Table A.9 (FreezeNet): SNIP's setup [94] for MNIST/CIFAR, SynFlow's [174] for Tiny ImageNet
    "A9 MNIST": dict(MNIST, init="xavier_normal"),
    "A9 CIFAR-10": dict(CIFAR10, init="xavier_normal"),
    "A9 CIFAR-100": dict(CIFAR10, dataset="cifar100", lr=0.01, init="kaiming_uniform"),
    "A9 Tiny ImageNet": dict(dataset="tiny_imagenet", epochs=100, batch_size=128, lr=0.1, momentum=0.9, lr_gamma=0.1,
                             lr_every_iters=None, lr_milestones=[30, 60, 80], warmup_epochs=0.0, weight_decay=5e-4,
                             label_smoothing=0.0, init="kaiming_uniform"),
    # Table A.10 (COPS)
    "A10 MNIST": dict(MNIST, init="xavier_normal"),
    "A10 CIFAR-10": dict(CIFAR10, init="kaiming_uniform"),
    "A10 CIFAR-100": dict(dataset="cifar100", epochs=160, batch_size=128, lr=0.01, momentum=0.9, lr_gamma=0.2,
                          lr_every_iters=None, lr_milestones=[60, 120], warmup_epochs=0.0, weight_decay=5e-4,
                          label_smoothing=0.0, init="kaiming_uniform"),
    "A10 Tiny ImageNet": dict(dataset="tiny_imagenet", epochs=100, batch_size=128, lr=0.1, momentum=0.9, lr_gamma=0.1,
                              lr_every_iters=None, lr_milestones=[30, 60, 80], warmup_epochs=0.0, weight_decay=1e-4,
                              label_smoothing=0.0, init="kaiming_uniform"),
    # Table A.11 (SP vs IP; the table gives no initialisation)
    "A11 CIFAR-10": dict(CIFAR10),
    "A11 LTH": dict(dataset="cifar10", epochs=160, batch_size=128, lr=0.1, momentum=0.9, lr_gamma=0.1, lr_every_iters=None,
                    lr_milestones=[80, 120], warmup_epochs=0.0, weight_decay=1e-4, label_smoothing=0.0),
    "A11 ImageNet PaI": dict(dataset="imagenet", epochs=90, batch_size=512, lr=0.1, momentum=0.9, lr_gamma=0.1,
                             lr_every_iters=None, lr_milestones=[30, 60], warmup_epochs=0.0, weight_decay=1e-4,
                             label_smoothing=0.0),
    "A11 RigL/FT": dict(dataset="imagenet", epochs=100, batch_size=128, lr=0.1, momentum=0.9, lr_gamma=0.1, lr_every_iters=None,
                        lr_milestones=[30, 60, 90], warmup_epochs=5.0, weight_decay=1e-4, label_smoothing=0.1),
    "A11 GMP": dict(dataset="imagenet", epochs=100, batch_size=256, lr=0.1, momentum=0.9, lr_gamma=0.1, lr_every_iters=None,
                    lr_milestones=[30, 60, 80], warmup_epochs=5.0, weight_decay=1e-4, label_smoothing=0.1),
    # CPU-scale reproduction (docs/results.md): Fashion-MNIST with Table A.9's MNIST batch, momentum, decay
    # factor and weight decay; the schedule shortened (lr_every_iters 25,000 / 250 or / 50)
    "repro LeNet-5": dict(dataset="fashion_mnist", epochs=1, batch_size=100, momentum=0.9, lr_gamma=0.1, lr_every_iters=100,
                          lr_milestones=[], warmup_epochs=0.0, weight_decay=5e-4, label_smoothing=0.0),
    "repro LeNet-300-100": dict(dataset="fashion_mnist", epochs=5, batch_size=100, momentum=0.9, lr_gamma=0.1,
                                lr_every_iters=500, lr_milestones=[], warmup_epochs=0.0, weight_decay=5e-4, label_smoothing=0.0),
}

# preset: (column, model, method, sharing, deviations from the column that the figure itself prescribes)
PRESETS = {
    "a9_lenet300_mnist": ("A9 MNIST", "lenet300", "dense", "none", {}),
    "a9_lenet5_mnist": ("A9 MNIST", "lenet5", "dense", "none", {}),
    "a9_vgg16_cifar10": ("A9 CIFAR-10", "vgg16", "dense", "none", {}),
    "a9_vgg16_cifar100": ("A9 CIFAR-100", "vgg16", "dense", "none", {}),
    "a9_resnet34_tiny_imagenet": ("A9 Tiny ImageNet", "resnet34", "dense", "none", {}),
    "a10_lenet5_mnist": ("A10 MNIST", "lenet5", "dense", "none", {}),
    "a10_vgg16_cifar10": ("A10 CIFAR-10", "vgg16", "dense", "none", {}),
    "a10_resnet18_cifar100": ("A10 CIFAR-100", "resnet18", "dense", "none", {}),
    "a10_resnet18_tiny_imagenet": ("A10 Tiny ImageNet", "resnet18", "dense", "none", {}),
    "a10_wrn18_2_tiny_imagenet": ("A10 Tiny ImageNet", "wrn18_2", "dense", "none", {}),
    "a10_cops_lenet5_mnist": ("A10 MNIST", "lenet5", "g_cops", "none", {}),
    "a10_cops_vgg16_cifar10": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    "a10_cops_resnet18_cifar100": ("A10 CIFAR-100", "resnet18", "g_cops", "none", {}),
    "a10_cops_resnet18_tiny_imagenet": ("A10 Tiny ImageNet", "resnet18", "g_cops", "none", {}),
    "a10_cops_wrn18_2_tiny_imagenet": ("A10 Tiny ImageNet", "wrn18_2", "g_cops", "none", {}),
    "a11_vgg16_cifar10": ("A11 CIFAR-10", "vgg16", "dense", "none", {}),
    "a11_ip_vgg16_cifar10": ("A11 CIFAR-10", "vgg16", "dense", "medium", {}),
    "a11_set_vgg16_cifar10": ("A11 CIFAR-10", "vgg16", "set", "none", {}),
    "a11_vgg16_lth_cifar10": ("A11 LTH", "vgg16_lth", "dense", "none", {}),
    "a11_ip_vgg16_lth_cifar10": ("A11 LTH", "vgg16_lth", "dense", "medium", {}),
    "a11_lth_vgg16_lth_cifar10": ("A11 LTH", "vgg16_lth", "lth", "none", {}),
    "a11_resnet18_imagenet": ("A11 ImageNet PaI", "resnet18_imagenet", "dense", "none", {}),
    "a11_ip_resnet18_imagenet": ("A11 ImageNet PaI", "resnet18_imagenet", "dense", "coarse", {}),
    "a11_resnet50_imagenet_rigl": ("A11 RigL/FT", "resnet50", "dense", "none", {}),
    "a11_ip_resnet50_imagenet_rigl": ("A11 RigL/FT", "resnet50", "dense", "fine", {}),
    "a11_rigl_resnet50_imagenet": ("A11 RigL/FT", "resnet50", "rigl", "none", {}),
    "a11_ft_resnet50_imagenet": ("A11 RigL/FT", "resnet50", "ft", "none", {}),
    "a11_resnet50_imagenet_gmp": ("A11 GMP", "resnet50", "dense", "none", {}),
    "a11_ip_resnet50_imagenet_gmp": ("A11 GMP", "resnet50", "dense", "fine", {}),
    "a11_gmp_resnet50_imagenet": ("A11 GMP", "resnet50", "gmp", "none", {}),
    # chapter 3 (FreezeNet): Table A.9
    "table3_2_lenet5_mnist": ("A9 MNIST", "lenet5", "freezenet", "none", {}),
    "table3_3_lenet5_mnist": ("A9 MNIST", "lenet5", "freezenet", "none", {}),
    "table3_4_vgg16_cifar10": ("A9 CIFAR-10", "vgg16", "freezenet", "none", {}),
    "table3_4_vgg16_cifar100": ("A9 CIFAR-100", "vgg16", "freezenet", "none", {}),
    "fig3_1_dense_baseline_vgg16_cifar10": ("A9 CIFAR-10", "vgg16", "dense", "none", {}),
    "fig3_1_gradient_flow_vgg16_cifar10": ("A9 CIFAR-10", "vgg16", "freezenet", "none", {}),
    "fig3_3a_lenet300_mnist": ("A9 MNIST", "lenet300", "freezenet", "none", {}),
    "fig3_3b_lenet5_mnist": ("A9 MNIST", "lenet5", "freezenet", "none", {}),
    "fig3_4a_overfitting_lenet5": ("A9 MNIST", "lenet5", "freezenet", "none", {"weight_decay": 0.0}),  # no regularisation
    "fig3_4b_initialisations_lenet5": ("A9 MNIST", "lenet5", "freezenet", "none", {}),
    "fig3_5a_resnet34_tiny_imagenet": ("A9 Tiny ImageNet", "resnet34", "freezenet", "none", {}),
    "fig3_5b_gradient_flow_vgg16_cifar10": ("A9 CIFAR-10", "vgg16", "freezenet", "none", {}),
    "fig3_6_reinit_lenet5": ("A9 MNIST", "lenet5", "freezenet", "none", {}),
    # chapter 4 (COPS): Table A.10
    "fig4_6_similarity": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    "fig4_7_resnet18_cifar100": ("A10 CIFAR-100", "resnet18", "g_cops", "none", {}),
    "fig4_8_lenet5_mnist": ("A10 MNIST", "lenet5", "u_cops", "none", {}),
    # Fig. 4.1: gradient flow and accuracy over q in the Table A.10 setup (random/SNIP/GraSP, G-COPS, dense)
    "fig4_1_vgg16_cifar10": ("A10 CIFAR-10", "vgg16", "snip", "none", {}),
    "fig4_1_gcops_vgg16_cifar10": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    "fig4_1_dense_baseline_vgg16_cifar10": ("A10 CIFAR-10", "vgg16", "dense", "none", {}),
    "table4_1_vgg16_cifar10_baselines": ("A10 CIFAR-10", "vgg16", "snip", "none", {}),
    "table4_1_vgg16_cifar10_cops": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    "table4_2_resnet18_cifar100_baselines": ("A10 CIFAR-100", "resnet18", "snip", "none", {}),
    "table4_2_resnet18_cifar100_gcops": ("A10 CIFAR-100", "resnet18", "g_cops", "none", {}),
    "table4_2_resnet18_tiny_imagenet_baselines": ("A10 Tiny ImageNet", "resnet18", "snip", "none", {}),
    "table4_2_resnet18_tiny_imagenet_gcops": ("A10 Tiny ImageNet", "resnet18", "g_cops", "none", {}),
    "table4_2_wrn18_2_tiny_imagenet_baselines": ("A10 Tiny ImageNet", "wrn18_2", "snip", "none", {}),
    "table4_2_wrn18_2_tiny_imagenet_gcops": ("A10 Tiny ImageNet", "wrn18_2", "g_cops", "none", {}),
    "table4_3_alpha_random_search": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    "table4_3_lambda_random_search": ("A10 CIFAR-10", "vgg16", "g_cops", "none", {}),
    # chapter 5 (interspace pruning): Table A.11
    "fig5_5_vgg16_cifar10": ("A11 CIFAR-10", "vgg16", "snip", "medium", {}),
    "fig5_5_resnet18_imagenet": ("A11 ImageNet PaI", "resnet18_imagenet", "snip", "coarse", {}),
    "fig5_6_snip_gradients": ("A11 CIFAR-10", "vgg16", "snip", "fine", {}),
    "fig5_7_lth_vgg16_lth_cifar10": ("A11 LTH", "vgg16_lth", "lth", "medium", {}),
    "fig5_7_set_vgg16_cifar10": ("A11 CIFAR-10", "vgg16", "set", "medium", {}),
    "fig5_9a_initialisations": ("A11 CIFAR-10", "vgg16", "snip", "medium", {}),
    "fig5_9b_sharing_set": ("A11 CIFAR-10", "vgg16", "set", "medium", {}),
    "fig5_10a_in_nc_lth": ("A11 LTH", "vgg16_lth", "lth", "in_nc", {}),
    "fig5_10b_out_nc_lth": ("A11 LTH", "vgg16_lth", "lth", "out_nc", {}),
    **{f"fig5_11b_dict{n:02d}": ("A11 CIFAR-10", "vgg16", "snip", "medium", {}) for n in range(4, 15)},
    "fig5_12_freezenet": ("A11 CIFAR-10", "vgg16", "freezenet", "medium", {}),
    "table5_1_ft": ("A11 RigL/FT", "resnet50", "ft", "fine", {}),
    "table5_1_gmp": ("A11 GMP", "resnet50", "gmp", "fine", {}),
    "table5_1_rigl": ("A11 RigL/FT", "resnet50", "rigl", "fine", {}),
    "table5_2_sharing_set": ("A11 CIFAR-10", "vgg16", "set", "coarse", {}),
    "table5_2_sharing_snip": ("A11 CIFAR-10", "vgg16", "snip", "coarse", {}),
    "table5_3_rigl_generalisation": ("A11 RigL/FT", "resnet50", "rigl", "fine", {}),
    "table5_3_set_generalisation": ("A11 CIFAR-10", "vgg16", "set", "medium", {}),
    "table5_3_snip_generalisation": ("A11 CIFAR-10", "vgg16", "snip", "medium", {}),
    # CPU-scale reproduction (docs/results.md)
    "repro_fig3_3": ("repro LeNet-5", "lenet5", "freezenet", "none", {"lr": 0.1}),
    "repro_fig3_4b": ("repro LeNet-5", "lenet5", "freezenet", "none", {"lr": 0.1}),
    "repro_fig3_6": ("repro LeNet-5", "lenet5", "freezenet", "none", {"lr": 0.1}),
    "repro_table4_1": ("repro LeNet-5", "lenet5", "g_cops", "none", {"lr": 0.1}),
    "repro_fig4_6": ("repro LeNet-5", "lenet5", "g_cops", "none", {"lr": 0.1}),
    "repro_fig4_8": ("repro LeNet-5", "lenet5", "u_cops", "none", {"lr": 0.1}),
    "repro_fig5_5": ("repro LeNet-5", "lenet5", "snip", "none", {"lr": 0.01}),  # sweeps sharing
    "repro_fig5_9a": ("repro LeNet-5", "lenet5", "snip", "fine", {"lr": 0.01}),
    "repro_others": ("repro LeNet-300-100", "lenet300", "lth", "none", {"lr": 0.1}),
}


def _actual(cfg, key):
    return cfg.init.weights if key == "init" else cfg.dataset.name if key == "dataset" else cfg.trainer[key]


def _composed(overrides_list):
    """Compose many configs under one Hydra initialisation (as conftest's make_cfg does one by one)."""
    cli._register_schemas()
    with initialize_config_module(config_module="sparse_exp.conf", version_base="1.3"):
        for overrides in overrides_list:
            yield overrides, compose(config_name="config", overrides=list(overrides))


def test_every_preset_holds_its_table_column():
    assert set(PRESETS) == set(group_options("experiment")), "a preset without a row here (or a row without a preset)"
    wrong = []
    for (override,), cfg in _composed([(f"experiment={p}",) for p in PRESETS]):
        preset = override.split("=", 1)[1]
        column, model, method, sharing, deviations = PRESETS[preset]
        validate(cfg)
        expected = {**COLUMNS[column], **deviations}
        for key, value in expected.items():
            got = _actual(cfg, key)
            got = list(got) if key == "lr_milestones" else got
            if got != value:
                wrong.append(f"{preset}: {key} = {got}, {column} says {value}")
        for key, value in (("model", model), ("method", method), ("sharing", sharing)):
            if cfg[key].name != value:
                wrong.append(f"{preset}: {key} = {cfg[key].name}, expected {value}")
    assert wrong == []


def test_every_other_option_composes_and_validates():
    """Each option of the other config groups on its own (the presets are covered above)."""
    options = [(g, o) for g in GROUPS if g != "experiment" for o in group_options(g)]
    assert len(options) > 30
    for overrides, cfg in _composed([(f"{g}={o}", *_compatible(g, o)) for g, o in options]):
        group, option = overrides[0].split("=", 1)
        assert cfg[group].name == option, (group, option)
        validate(cfg)
