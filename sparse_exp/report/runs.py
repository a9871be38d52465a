"""Reading runs back: their metrics.json, their configs flattened to dotted keys, and which keys vary.

A report groups runs by every config key whose value differs across them (seed excepted), so runs of
different configurations are never averaged into one row; `IGNORED` are the keys that say where or how
fast a run ran, never what it computed.
"""
from __future__ import annotations

import difflib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

# Keys that never split groups: the seed is what a group averages over; the rest are paths and speed knobs.
IGNORED = ("seed", "resume", "device", "dataset.root", "dataset.num_workers", "dataset.download", "trainer.threads",
           "trainer.log_every", "trainer.eval_batch_size", "trainer.checkpoint_every_steps",
           "trainer.checkpoint_every_min", "dry_run")
FINISHED = ("completed", "diverged")
INCOMPLETE = ("running", "interrupted")


def find_runs(paths: Iterable[Path]) -> list[dict]:
    """Every metrics.json under the given run dirs, sweep dirs or files, with its dir in `_dir`."""
    runs = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("metrics.json"))
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            data["_dir"] = str(f.parent)
            runs.append(data)
    return runs


def hashable(value: Any) -> Any:
    """Lists (tags, lr milestones) and dicts become tuples, so they can be group keys."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: hashable(node)}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_of(run: dict) -> dict[str, Any]:
    if "_flat" not in run:
        run["_flat"] = flatten(run.get("config", {}))
    return run["_flat"]


def lookup(run: dict, key: str) -> Any:
    """A dotted key of the run's config (method.alpha) or of its metrics (storage.compression_factor)."""
    flat = config_of(run)
    if key in flat:
        return flat[key]
    node: Any = run
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return hashable(node)


def varying_keys(runs: list[dict], ignored: Iterable[str] = IGNORED) -> list[str]:
    """The config keys that tell the runs' configurations apart (seed and `ignored` excepted), as few as
    give the same groups: a key varies if two runs that have it disagree (a key only some runs have, like
    method.alpha, is told apart by the key that selects it, method.name), and a key whose value is fixed
    by the keys before it (trainer.lr_every_iters by trainer.name) is left out. `*.name` keys come first."""
    order: list[str] = []
    seen: set[str] = set()
    for run in runs:
        for key in config_of(run):
            if key not in seen:
                seen.add(key)
                order.append(key)
    order.sort(key=lambda k: not k.endswith(".name"))  # stable: config order within each class
    skip = set(ignored)
    kept: list[str] = []
    for key in order:
        if key in skip:
            continue
        values = {repr(config_of(r)[key]) for r in runs if key in config_of(r)}
        if len(values) < 2:
            continue
        groups = group_runs(runs, kept) if kept else {(): runs}
        if any(len({repr(config_of(r)[key]) for r in members if key in config_of(r)}) > 1 for members in groups.values()):
            kept.append(key)
    return kept


def known_keys(runs: list[dict]) -> set[str]:
    keys: set[str] = set()
    for run in runs:
        keys |= set(config_of(run))
        keys |= {k for k, v in run.items() if not k.startswith("_") and not isinstance(v, (dict, list))}
        for k, v in run.items():
            if isinstance(v, dict) and k != "config":
                keys |= {f"{k}.{kk}" for kk in v}
    return keys


def check_keys(runs: list[dict], keys: list[str]) -> str | None:
    """One sentence for a key that no run has, with the closest existing keys."""
    known = known_keys(runs)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            return f"'{key}' is not a config or metrics key of these runs{hint}"
    return None


def group_runs(runs: list[dict], by: list[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[tuple(lookup(run, k) for k in by)].append(run)
    return dict(sorted(groups.items(), key=lambda kv: tuple((v is None, str(type(v)), v if isinstance(v, (int, float)) else str(v))
                                                              for v in kv[0])))


def still_varying(runs: list[dict], by: list[str]) -> list[str]:
    """Keys that vary inside at least one group of `by` (an explicit --by that mixes configurations)."""
    mixed: list[str] = []
    for members in group_runs(runs, by).values():
        for key in varying_keys(members):
            if key not in by and key not in mixed:
                mixed.append(key)
    return mixed
