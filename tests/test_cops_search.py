"""LambdaSearch (cops/bisection.py): the bisection on the dual variable lambda, its secant narrowing and the kink handling, each step on problems small enough to follow by hand.

Fast tests of single functions, written so that the mutation check (`make mutate`, docs/testing.md) kills
its mutants in the first tests it runs."""
