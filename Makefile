# target-profile-sync: `make demo` runs the job locally, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# pyenv's own 3.13 first: its shim answers "command not found" unless 3.13 is the selected version.
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The venv's python3.13 on PATH is what `sam build` (no container) needs.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
# The stack's template and the one it nests (its Observability application): sam validate and checkov
# read one file at a time and do not follow a nested Location, so each is named here.
TEMPLATES := template.yaml observability.yaml

.PHONY: help setup test lint format unit asl-validate sam-validate sam-build security-scan demo bench clean

help:
	@echo "make demo   set up and run the job locally on the bundled sample"
	@echo "make test   ruff, mypy, pytest, asl-validator, sam validate --lint, sam build, checkov"
	@echo "make bench  engine, poll-lag, pipeline, cost and delta-sync tables against their goals (takes minutes)"
	@echo "make sam-local  every function in SAM's container against the local stack (needs Docker)"
	@echo "make smoke STACK=name CLIENT=code  the sample through a deployed stack"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-dev.lock layers/common/requirements.txt
	test -x $(BIN)/python || $(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements-dev.lock -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: setup lint unit asl-validate sam-validate sam-build security-scan

lint: setup
	ruff check .
	ruff format --check .
	mypy

format: setup
	ruff format .
	ruff check --fix .

unit: setup
	pytest

# The definition as Step Functions receives it: the template's DefinitionSubstitutions applied (the
# file alone is not JSON: MaxConcurrency's placeholder stands for a number, unquoted).
asl-validate: setup node_modules/.installed
	mkdir -p out
	python -c 'from profile_sync_local.stack.project import state_machine_definition; print(state_machine_definition())' \
	  > out/profile_sync.asl.json
	npx --no-install asl-validator --json-path out/profile_sync.asl.json

sam-validate: setup
	for template in $(TEMPLATES); do sam validate --lint --template "$$template" || exit 1; done

sam-build: setup
	sam build

# The IaC security scanner, in a virtual environment of its own: checkov's pins clash with the
# project's (boto3 among others). Its findings are held to local/checkov/baseline.yaml.
CHECKOV_VENV := .venv-checkov
CHECKOV_LOCK := local/checkov/requirements.lock

$(CHECKOV_VENV)/.installed: $(CHECKOV_LOCK)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q -r $(CHECKOV_LOCK)
	touch $@

security-scan: setup $(CHECKOV_VENV)/.installed
	mkdir -p out
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov $(foreach t,$(TEMPLATES),--file $(t)) --framework cloudformation \
	  --output json --soft-fail --quiet --skip-download > out/checkov.json
	python local/checkov/gate.py out/checkov.json

# The sample has bad rows on purpose: the job ends COMPLETE_WITH_ERRORS (exit 1), which is the demo.
demo: setup
	profile-sync run local/samples/visitors.csv --out out/demo || test $$? -eq 1
	@echo "Rows that are not a success, with line numbers: out/demo/rows.csv"

# Sizes: BENCH_ROWS (engine, default "1000000 5000000"), BENCH_PIPELINE_ROWS (profile-sync run,
# default "100000 1000000 3000000": time, CPU and peak memory per size). Every table, then PASS/FAIL.
bench: setup
	python bench/bench_validate.py; v=$$?; python bench/bench_transcode.py; t=$$?; \
	  python bench/bench_pipeline.py; p=$$?; python bench/bench_delta.py; d=$$?; \
	  test $$v -eq 0 -a $$t -eq 0 -a $$p -eq 0 -a $$d -eq 0

clean:
	rm -rf .aws-sam out .pytest_cache .ruff_cache .mypy_cache node_modules

# Optional, not part of `make test`: needs Docker and the Lambda base image (README: sam local invoke).
# Every events/ file through `sam local invoke` in a container, against a moto server and the Target
# emulator (behind an HTTPS relay) on the Docker bridge address; checks each answer and the records
# it wrote, since sam exits 0 even when the handler raises. Without a Docker engine it says it did
# not run, and why, and exits 0.
.PHONY: sam-local
sam-local: setup
	PYTHONPATH=local python -m sam_local

# Optional, not part of `make test`: the sample through a deployed stack (README: smoke test).
# Skipped, exit 0, when no AWS credentials are found.
.PHONY: smoke
smoke: setup
	@test -n "$(STACK)" -a -n "$(CLIENT)" || { echo "usage: make smoke STACK=<stack name> CLIENT=<Target client code>"; exit 2; }
	python -m profile_sync_local.smoke --stack "$(STACK)" --client "$(CLIENT)"
