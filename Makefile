# Two commands set everything up on a fresh machine:  make demo  |  make test
# torch is installed first from a pin (a CPU wheel here); override with e.g. make test TORCH_SPEC='torch==2.5.1'.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

.PHONY: install test data demo jury bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q '$(TORCH_SPEC)'
	$(PIP) install -q -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest -q

data: install
	$(PY) -m evaluator.demo_data --out data/demo

demo: data
	$(PY) -m evaluator.demo --data data/demo --work demo_out

jury: install
	$(VENV)/bin/pp-jury serve demo_out/results/jury

bench: install
	$(PY) benchmarks/bench_biqa.py

clean:
	rm -rf $(VENV) data/demo demo_out .pytest_cache
