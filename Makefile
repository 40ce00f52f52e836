# Two commands matter: `make bench` (set up, run the default scenario, print the table) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-gpu bench smoke test lint clean vendor-plotly

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

# The report inlines plotly.js's cartesian bundle, at the version the installed plotly (Python) was built for.
vendor-plotly: setup
	version=$$($(BIN)/python -c "import reporting.html as h; print(h.plotly_py_js_version())") && \
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent plotly.js-cartesian-dist-min@$$version >/dev/null && \
	tar xzf plotly.js-cartesian-dist-min-$$version.tgz && \
	cp package/plotly-cartesian.min.js $(CURDIR)/reporting/static/vendor/ && \
	cp package/LICENSE $(CURDIR)/reporting/static/vendor/plotly-LICENSE && rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
