"""Import a user's callable named on the command line: `package.module:function` or
`path/to/file.py:function` (model.target, dataset.target).

The working directory is searched first, as `python -m` would, so a module next to where the
command is typed is found even though the `sparse-exp` script lives elsewhere.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

from sparse_exp.errors import ConfigError


def import_target(target: str | None, key: str) -> Callable:
    """The callable `target` names; ConfigError (naming `key`) if it cannot be imported."""
    if not target or ":" not in str(target):
        raise ConfigError(f"{key} must name a callable as module:function (e.g. my_pkg.nets:build_net or "
                          f"nets.py:build_net); got '{target}'")
    module_name, _, attr = str(target).rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().absolute()
            spec = importlib.util.spec_from_file_location(f"_sparse_exp_target_{path.stem}", path)
            if spec is None or not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix, in one sentence
        raise ConfigError(f"{key}: cannot import '{module_name}' ({type(exc).__name__}: {exc})") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
    if not callable(fn):
        raise ConfigError(f"{key}: '{module_name}' has no callable '{attr}'")
    return fn
