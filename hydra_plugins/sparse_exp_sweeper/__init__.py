"""Hydra instantiates sweepers only from classes defined in the `hydra_plugins` namespace: this is
sparse-exp's sweeper (all of its logic is in sparse_exp/sweep.py), selected by `hydra/sweeper: sparse_exp`
in conf/config.yaml."""
from sparse_exp.sweep import PlanningSweeper, SparseExpSweeperConf  # noqa: F401


class SparseExpSweeper(PlanningSweeper):
    pass
