"""What the command says about itself: the `--help` page, `--version`, and the shell-completion
arguments that are not overrides.

The help page is Hydra's `hydra.help.template` (conf/hydra/help/sparse_exp.yaml), filled by the
`sparse_exp_help` resolver below from the config groups themselves: every option of every group
with one line (the first comment line of its YAML file, or the model's registry description), the
experiment presets grouped by chapter, the common knobs and examples. A new YAML file therefore
appears in `--help` without editing this module.
"""
from __future__ import annotations

import re
import sys
import textwrap

from omegaconf import OmegaConf

from sparse_exp.config.overrides import CONF_DIR, group_options

# The groups listed, in this order (the internal schema/* groups are not).
HELP_GROUPS = ("dataset", "model", "method", "sharing", "init", "trainer")
PRESET_CHAPTERS = (
    (("table3_", "fig3_"), "Chapter 3, FreezeNet"),
    (("table4_", "fig4_"), "Chapter 4, COPS"),
    (("table5_", "fig5_"), "Chapter 5, interspace pruning"),
    (("a9_",), "Table A.9 setups (FreezeNet)"),
    (("a10_",), "Table A.10 setups (COPS)"),
    (("a11_",), "Table A.11 setups (interspace pruning, DST, LTH, GMP, FT)"),
)
KNOBS = (
    ("seed=0", "the run's seed (data split and order, initialisation, masks)"),
    ("device=auto|cpu|cuda|cuda:N", "where the run computes"),
    ("dry_run=true", "build everything and compute the masks, train nothing"),
    ("resume=<run dir>", "continue a killed run exactly where it stopped"),
    ("method.compression=0.99", "q, the fraction of prunable (conv and linear) weights removed or frozen"),
    ("trainer.epochs / batch_size / lr", "the training length, batch and learning rate"),
    ("trainer.optimizer=sgd|adam|adamw", "SGD with momentum (the papers'), Adam, AdamW"),
    ("trainer.lr_schedule=step|cosine", "the papers' step decays, or cosine (trainer.warmup_epochs for both)"),
    ("model.pretrained=<run dir or .pt>", "start from trained weights (every method)"),
    ("model=custom model.target=pkg.mod:fn", "your own network (+model.kwargs.<name>=...)"),
    ("dataset=custom dataset.target=pkg.mod:fn", "your own data (+dataset.kwargs.<name>=...)"),
    ("dataset.root=<folder>", "where the data files are (dataset.download=true fetches MNIST/CIFAR)"),
)
EXAMPLES = (
    "sparse-exp method=snip method.compression=0.99 trainer.epochs=10",
    "sparse-exp experiment=a10_cops_vgg16_cifar10 dataset.root=~/data",
    "sparse-exp -m method=snip,grasp,freezenet seed=0,1,2          # a sweep: 9 runs",
)


def version() -> str:
    try:
        from importlib.metadata import version as installed_version

        return installed_version("sparse-exp")
    except Exception:  # noqa: BLE001 - run from a source tree that is not installed
        import sparse_exp

        return getattr(sparse_exp, "__version__", "unknown")


SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")
ABBREVIATIONS = {"eq", "Eq", "eqs", "Fig", "Figs", "Alg", "Algs", "al", "e.g", "i.e", "cf"}


def describe(group: str, option: str, width: int = 90) -> str:
    """One line on an option: the first sentence of its YAML file's leading comment (not
    `@package`), shortened to `width` characters; else the model's registry description."""
    words: list[str] = []
    for line in (CONF_DIR / group / f"{option}.yaml").read_text().splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            words += text.split()
    text = " ".join(words)
    if not text and group == "model":
        from sparse_exp.models import MODELS

        spec = MODELS.get(option)
        text = f"{spec.description} ({spec.table})"
    for match in SENTENCE_END.finditer(text):  # the first sentence ("eq. A.82" and "et al." do not end one)
        if text[: match.start()].rsplit(" ", 1)[-1].lstrip("(") not in ABBREVIATIONS:
            text = text[: match.start() + 1]
            break
    return text if len(text) <= width else text[: width - 4].rsplit(" ", 1)[0] + " ..."


def _wrap(text: str, indent: int, width: int = 100) -> str:
    return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent)


def help_page() -> str:
    lines = [
        f"sparse-exp {version()}: sparse training experiments - FreezeNet, COPS, interspace pruning, SET, RigL,",
        "lottery tickets, gradual magnitude pruning, fine-tuning and pruning at initialisation - on the",
        "architectures and training setups of the papers, or on your own model and data.",
        "",
        "Usage: sparse-exp [group=option ...] [key=value ...]      one run (outputs/<date>/<time>/)",
        "       sparse-exp -m key=a,b,c ...                         a sweep (multirun/<date>/<time>/<job>/)",
        "",
        "== Config groups (group=option) ==",
    ]
    for group in HELP_GROUPS:
        options = group_options(group)
        lines.append(f"{group}:")
        width = max(len(o) for o in options)
        for option in options:
            lines.append(f"  {option:<{width}}  {describe(group, option)}".rstrip())
    lines += ["", "== Experiment presets (experiment=<name>; see one with: sparse-exp experiment=<name> --cfg job) =="]
    presets = group_options("experiment")
    for prefixes, title in PRESET_CHAPTERS:
        chosen = [p for p in presets if p.startswith(prefixes)]
        if chosen:
            lines += [f"{title}:", _wrap(", ".join(chosen), 2)]
    other = [p for p in presets if not any(p.startswith(pre) for pre, _ in PRESET_CHAPTERS)]
    if other:
        lines += ["other:", _wrap(", ".join(other), 2)]
    lines += ["", "== Common knobs =="]
    width = max(len(k) for k, _ in KNOBS)
    lines += [f"  {knob:<{width}}  {text}" for knob, text in KNOBS]
    lines += ["", "== Examples =="] + [f"  {e}" for e in EXAMPLES]
    lines += [
        "",
        "== More ==",
        "  sparse-exp <overrides> --cfg job      print the composed config instead of running",
        "  sparse-exp --version                  the tool's version",
        '  eval "$(sparse-exp -sc install=bash)" tab completion of groups, options and keys in bash',
        "  sparse-exp --hydra-help               Hydra's own flags (launchers, sweepers, logging)",
        "  README.md and docs/architecture.md    the manual and the code's structure",
    ]
    return "\n".join(lines)


def _help_resolver() -> str:
    # string.Template fills Hydra's $-variables in the template: escape ours
    return help_page().replace("$", "$$")


if not OmegaConf.has_resolver("sparse_exp_help"):
    OmegaConf.register_new_resolver("sparse_exp_help", _help_resolver)


def print_version_if_asked(argv: list[str]) -> None:
    """`--version` prints this tool's version and exits (Hydra's own flag would print Hydra's)."""
    if "--version" in argv:
        print(f"sparse-exp {version()}")
        sys.exit(0)


def is_shell_completion(argv: list[str]) -> bool:
    """`-sc install=bash` / `-sc query=bash`: Hydra's completion arguments, not config overrides."""
    return any(a in ("-sc", "--shell-completion") or a.startswith("--shell-completion=") for a in argv)


__all__ = ["help_page", "is_shell_completion", "print_version_if_asked", "version"]
