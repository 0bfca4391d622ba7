# Image Router: developer entry points. `make run` starts the whole stack on this
# machine, `make test` runs the whole suite on a stack of its own.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := $(BIN)/python deploy/local/stack.py
INSTALL_STAMP := $(VENV)/.installed
PROJECT_FILES := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml simulator/pyproject.toml) tests/requirements.txt deploy/local/install.sh

.PHONY: install proto run stop status migrate test check-deploy lock lint clean bench

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): $(PROJECT_FILES) $(wildcard proto/imagerouter/v1/*.proto)
	PYTHON=$(PYTHON) bash deploy/local/install.sh
	touch $@

# Generate the gRPC stubs (and their .pyi type stubs) into the shared library.
proto:
	$(BIN)/python -m grpc_tools.protoc -Iproto \
		--python_out=libs/common/src --pyi_out=libs/common/src \
		--grpc_python_out=libs/common/src \
		proto/imagerouter/v1/*.proto
	touch libs/common/src/imagerouter/__init__.py libs/common/src/imagerouter/v1/__init__.py

run: install
	$(STACK) up --profile dev

stop:
	$(STACK) down --profile dev

status:
	$(STACK) status --profile dev

# Apply every service's migrations to the dev database without starting anything.
migrate: install
	$(STACK) migrate --profile dev

test: install
	$(BIN)/python -m pytest

# Only the offline checks of the deployment files and the images' settings
# (also part of `make test`): compose schema, hadolint, kustomize and the
# Kubernetes schemas, and each service started as its container would be.
check-deploy: install
	$(BIN)/python -m pytest tests/deploy

# Regenerate the images' locked requirements (hashes included) from the
# pyproject.toml files; keeps existing pins unless LOCK_ARGS=--upgrade.
lock: install
	$(BIN)/python deploy/compose/lock_requirements.py $(LOCK_ARGS)

# The benchmark beside LiteLLM and Portkey (long; not part of `make test`).
# BENCH_DURATION=seconds per run (default 15), BENCH_QUICK=1 for a short try;
# results go to bench/results/latest.md. Needs psutil, aiohttp and py-spy.
bench: install
	$(BIN)/pip install -q psutil aiohttp py-spy
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: stop
	rm -rf .run
