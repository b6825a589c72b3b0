# lit-distill: the two quickstart commands, and a few helpers.
#   make demo   set up .venv (once) and train the embedded default (configs/demo.yaml), offline, on CPU
#   make test   set up .venv (once) and run ruff and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: setup demo test lint format clean

setup: $(VENV)/.installed

# Re-installs only when pyproject.toml changes; a second `make` skips this step.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: setup
	$(OFFLINE) $(BIN)/lit-distill fit --config configs/demo.yaml

test: setup lint
	$(OFFLINE) $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check lit_distill tests scripts
	$(BIN)/ruff format --check lit_distill tests scripts

format: setup
	$(BIN)/ruff format lit_distill tests scripts
	$(BIN)/ruff check --fix lit_distill tests scripts

clean:
	rm -rf runs lightning_logs
