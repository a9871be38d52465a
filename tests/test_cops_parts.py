"""The building blocks of COPS: the dual's normalisation and candidate reduction (cops/dual.py), the one-swap projection and the limit masks (cops/projection.py), the backends' primitives (cops/backends.py), the k-th value bounds (cops/selection.py).

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs."""
