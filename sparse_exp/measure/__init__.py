"""Measurements of sparse SP/IP models.

flops.py        theoretical forward FLOPs per layer and in total (eqs. A.7, A.8, 5.15)
storage.py      basis parameter counts, q_with_bases, eq. A.2 storage
probes.py       training-time probes of interspace runs (eq. A.1 similarity, gradient norms)
run_metrics.py  what experiment.run adds to metrics.json
speedup.py      CSR simulation of sparse SP/IP inference (appendix D.4)
"""
