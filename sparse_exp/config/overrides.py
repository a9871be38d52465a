"""Command-line overrides, read before Hydra runs: which keys a multirun sweeps, and one sentence
for a bad override that names the key and what is allowed (Hydra's own messages span several lines
and suggest `+key=...`, which would add a key that nothing reads):

* an unknown group option (`method=copz`) suggests the closest options (difflib), or if none is
  close lists the group's options (a long group, the presets, is left to `sparse-exp --help`);
* an unknown key (`method.bogus=1`, `trainer.epoch=3`, `sed=1`, also as `+trainer.epoch=3`) lists
  the closest keys, or if none is close the keys of the config node it was meant for, in the
  groups that the command line (and an experiment preset) selects;
* a value of the wrong type (`trainer.epochs=many`) says which type the key takes.

Ranges and cross-key rules are checked later, on the composed config (config/validate.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from sparse_exp.registry import did_you_mean

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("dataset", "model", "method", "sharing", "init", "trainer", "experiment")
LIST_AT_MOST = 25  # a group with more options (the presets) is not listed in full in an error
SWEEP_FUNCTIONS = ("range(", "choice(", "glob(", "interval(", "tag(", "sort(", "shuffle(")


def group_options(group: str, searchpath: tuple[Path, ...] = ()) -> list[str]:
    """The options of a config group: its YAML files here and in `hydra.searchpath` folders."""
    return sorted({p.stem for folder in (CONF_DIR, *searchpath) for p in (Path(folder) / group).glob("*.yaml")})


def _searchpath(argv: list[str]) -> tuple[Path, ...]:
    """Local folders named by `hydra.searchpath=[file://...]` (the user's own presets)."""
    folders = []
    for arg in argv:
        if arg.startswith("hydra.searchpath="):
            for item in arg.split("=", 1)[1].strip("[]").split(","):
                item = item.strip().strip("'\"")
                if item.startswith("file://"):
                    folders.append(Path(item[len("file://"):]))
    return tuple(folders)


def _top_level_comma(value: str) -> bool:
    depth = 0
    for ch in value:
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == "," and depth == 0:
            return True
    return False


def is_sweep(value: str) -> bool:
    """A comma list (outside brackets) or a sweep function: several values for one key."""
    return _top_level_comma(value) or value.startswith(SWEEP_FUNCTIONS)


def plain_overrides(argv: list[str]) -> list[tuple[str, str]]:
    """(key, value) of the `key=value` arguments that change the task config (not hydra.*, flags,
    `+` appends or `~` deletions)."""
    pairs = []
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra")):
            continue
        key, value = arg.split("=", 1)
        pairs.append((key, value))
    return pairs


def _one_value_choice(value: str) -> bool:
    """`choice(x)`: how a key under a swept group is passed on to the jobs (cli.defer_group_keys), not a sweep."""
    return value.startswith("choice(") and value.endswith(")") and not _top_level_comma(value[len("choice("):-1])


def sweep_keys(argv: list[str]) -> list[str]:
    """Keys a multirun command line sweeps over (comma lists and sweep functions of several values)."""
    return [arg.split("=", 1)[0].lstrip("+~") for arg in argv
            if "=" in arg and not arg.startswith("-") and is_sweep(arg.split("=", 1)[1])
            and not _one_value_choice(arg.split("=", 1)[1])]


def check_group_choices(argv: list[str]) -> str | None:
    """One clear sentence for an unknown group option."""
    for key, value in plain_overrides(argv):
        if key not in GROUPS or any(ch in value for ch in "()[]{}$*"):  # sweep functions: left to Hydra
            continue
        options = group_options(key, _searchpath(argv))
        for choice in value.split(","):
            if choice and choice != "null" and choice not in options:
                hint = did_you_mean(choice, options)
                if hint:  # the closest options, not all of them
                    return f"{key}: unknown option '{choice}'; {hint.rstrip()}"
                if len(options) <= LIST_AT_MOST:
                    return f"{key}: unknown option '{choice}'; choose one of: {', '.join(options)}"
                return f"{key}: unknown option '{choice}'; none is close; `sparse-exp --help` lists all {len(options)}"
    return None


def _missing_key(cfg: DictConfig, key: str) -> tuple[str, DictConfig] | None:
    """(the deepest existing prefix, its node) when `key` does not exist in cfg, else None."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None  # an override into a list or a value: Hydra's own checks apply
        if part not in node:
            if node._metadata.object_type is dict:  # a dict field (model.kwargs): `+key=value` adds keys
                return None
            return ".".join(parts[:i]), node
        node = node[part]
    return None


def check_overrides(argv: list[str], compose: Callable[[list[str]], DictConfig]) -> str | None:
    """One sentence for the first bad override, or None. `compose(overrides)` composes the task
    config as @hydra.main will; it is called only when the command line sets keys, once unless
    a key is unknown.

    Swept values are not composed (only their keys are checked), and keys under a group swept over
    several options are left to Hydra: they may exist for some of the options."""
    message = check_group_choices(argv)
    if message:
        return message
    pairs = plain_overrides(argv)
    swept_groups = {k for k, v in pairs if k in GROUPS and is_sweep(v)}
    if "experiment" in swept_groups:  # a preset may select any group: every key may exist for some job
        return None
    keys = [k for k, _ in pairs if k not in GROUPS and k.split(".")[0] not in swept_groups]
    # `+key=value` would add a key that nothing reads (a typo that silently does nothing): the key
    # must exist already, and then Hydra itself refuses the `+`
    appended = [a.lstrip("+").split("=", 1)[0] for a in argv if a.startswith("+") and "=" in a]
    keys += [k for k in appended if not k.startswith("hydra") and k.split(".")[0] not in swept_groups]
    if not keys:
        return None
    fixed = [f"{k}={v}" for k, v in pairs if not is_sweep(v)]
    fixed += [a for a in argv if a.startswith("hydra.searchpath=")]  # presets from elsewhere
    try:
        cfg = compose(fixed)
    except Exception as exc:  # noqa: BLE001 - what is not recognised here stays Hydra's to report
        key, msg = getattr(exc.__cause__, "full_key", None), getattr(exc.__cause__, "msg", None)
        if not (key and msg):
            return None
        if not isinstance(exc.__cause__, (ConfigAttributeError, ConfigKeyError)):
            return f"{key}: {msg.splitlines()[0]}"  # e.g. "Value 'many' ... could not be converted to Integer"
        try:  # an unknown key: list the keys of the groups selected, without the values
            cfg = compose([a for a in fixed if a.split("=", 1)[0] in GROUPS or a.startswith("hydra.")])
        except Exception:  # noqa: BLE001
            return None
    for key in keys:
        missing = _missing_key(cfg, key)
        if missing is not None:
            return _no_such_key(cfg, key, *missing)
    return None


def _no_such_key(cfg: DictConfig, key: str, prefix: str, node: DictConfig) -> str:
    root = prefix.split(".")[0]
    if not prefix:
        where = "the top level"
    elif root in GROUPS:
        where = f"{prefix} ({root}={cfg[root].name})"
    else:
        where = prefix
    keys = list(map(str, node.keys()))
    hint = did_you_mean(key.split(".")[len(prefix.split(".")) if prefix else 0], keys, prefix=f"{prefix}." if prefix else "")
    if hint:  # the closest keys, not all of them
        return f"{key}: no such key in {where}; {hint.rstrip()}"
    return f"{key}: no such key in {where}; the keys there are: {', '.join(keys)}"
