"""The cache of composed configs for tests/conftest.py's `make_cfg`, in a module of its own.

pytest imports conftest.py afresh at every `pytest.main` in a process, so a cache kept there is emptied each
time; an ordinary module stays in sys.modules. The mutation check (scripts/mutate.py) runs pytest.main once per
mutant in processes forked from one that ran the selection, so they start with every config composed."""
from __future__ import annotations

from omegaconf import DictConfig

COMPOSED: dict[tuple[str, ...], DictConfig] = {}
