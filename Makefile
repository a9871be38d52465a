# The two commands a new user needs: `make run` (default experiment) and `make test` (test suite).
# Both set up everything on first use (venv in .venv/, the package, the offline Fashion-MNIST data)
# and are safe to run again.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data run test test-all bench reproduce reproduce-quick mutate clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Real Fashion-MNIST from Debian's dataset-fashion-mnist package (IDX files), when apt is usable.
data:
	@if [ -d $(FMNIST) ]; then \
		echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
			|| echo "warning: could not install dataset-fashion-mnist; set dataset.root to Fashion-MNIST IDX files"; \
	else \
		echo "note: Fashion-MNIST not found at $(FMNIST) and apt is unavailable; set dataset.root=<dir with IDX files>"; \
	fi

run: setup
	$(VENV)/bin/sparse-exp $(ARGS)

test: setup
	$(PY) -m pytest -q $(ARGS)

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

# The papers at CPU scale (docs/results.md): every conf/experiment/repro_*.yaml sweep, two jobs at a time,
# then the page. Re-running skips finished jobs. `reproduce-quick`: 1 seed, 20 steps, a pipeline check.
reproduce: setup
	$(PY) scripts/reproduce.py $(ARGS)

reproduce-quick: setup
	$(PY) scripts/reproduce.py --quick $(ARGS)

# Mutation check of the core (docs/testing.md): mutmut on each core module against its own fast tests.
mutate: setup
	$(PY) scripts/mutate.py $(ARGS)

bench: setup
	@for b in scripts/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .mutate
