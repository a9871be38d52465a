"""find_bracket (cops/bracket.py) and the solver's driver (cops/solver.py, cops/result.py): the first bracket of lambda*, its widening, and the result a solve returns.

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs."""
