"""sparse-exp: sparse training experiments (FreezeNet, COPS, interspace pruning and baselines)."""
__version__ = "0.1.0"
