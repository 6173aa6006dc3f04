# The two commands of the README, and their parts. Each target creates .venv itself.
#   make train  the main job: a short RL training run of the tiny model (docs/training.md)
#   make test   lint, types, import contracts and the test suite (what CI runs)
#   make demo   a quick rollout of a bundled scenario with scripted policies

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS ?= dev
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off -q

.PHONY: demo train test lint typecheck imports pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p runs && rm -f runs/demo.jsonl
	$(BIN)/simenv run support/Refunds-v1 --split eval \
		--policy oracle --policy null --policy random --out runs/demo.jsonl

# The main job: a short RL run of the tiny model (warm start, then GRPO + PPO on LoRA), CPU,
# about 5 minutes; held-out evaluation before and after, learning curve, MLflow run.
train: $(STAMP)
	rm -rf runs/train
	$(BIN)/simenv train --out runs/train

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck imports pytest

bench: $(STAMP)
	$(BIN)/python bench/env_step.py --write
	$(BIN)/python bench/check_fast.py --write
	$(BIN)/python bench/sqlite_reset.py --write
	$(BIN)/python bench/replay.py --write
	$(BIN)/python bench/docker_pool.py --write
	$(BIN)/python bench/rollout.py --write
	$(BIN)/python bench/server_step.py --write

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
