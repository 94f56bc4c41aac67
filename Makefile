# Two commands set everything up on a fresh machine:  make demo  |  make test
# torch is installed first from a pin (a CPU wheel here); override with e.g. make test TORCH_SPEC='torch==2.5.1'.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_IMAGES ?= all
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

.PHONY: install test data demo jury bench screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q '$(TORCH_SPEC)'
	$(PIP) install -q -e '.[test]'
	# PIQE parity reference (tests only); --no-deps: it asks for opencv-python, which would clash with the headless cv2
	$(PIP) install -q --no-deps 'pypiqe==1.2'
	touch $@

test: install
	$(PY) -m pytest -q

data: data/demo-manifest.csv

# the manifest lives beside data/demo/, not in it: the originals folder holds originals only
data/demo-manifest.csv: $(VENV)/.installed evaluator/demo/demo_data.py
	$(PY) -m evaluator.demo.demo_data --out data/demo

# attacks every demo image by default (about 5 minutes on 2 CPU cores); DEMO_IMAGES=N attacks the first N
demo: data
	$(PY) -m evaluator.demo.demo --data data/demo --work demo_out $(if $(filter all,$(DEMO_IMAGES)),,--images $(DEMO_IMAGES))

jury: install
	$(VENV)/bin/pp-jury serve demo_out/results/jury

bench: install
	PY=$(abspath $(PY)) bash benchmarks/run_all.sh
	$(PY) benchmarks/bench_attack_loop.py
	$(PY) benchmarks/bench_jury.py
	$(PY) benchmarks/bench_rank.py --jurors 1000 5000 20000

# docs/img/*.png: the report gallery, the juror page (desktop, phone), the organizer page (headless Chromium)
screenshots: install
	$(PY) benchmarks/screenshots.py --out docs/img

clean:
	rm -rf $(VENV) data/demo data/demo-manifest.csv demo_out .pytest_cache
