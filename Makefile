# Two commands matter: `make bench` (set up, run the default scenario, print the table) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-gpu bench smoke test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# NVIDIA machines: the gpu extra, and onnxruntime-gpu in place of onnxruntime (same module: never both).
setup-gpu: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,gpu]"
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet onnxruntime-gpu

bench: setup
	$(BIN)/accelbench run scenarios/default.yaml

smoke: setup
	$(BIN)/pytest scenarios/smoke.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
