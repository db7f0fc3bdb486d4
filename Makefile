# Two commands for a newcomer: `make up` (the dev stack, for real) and `make test` (the whole suite).
SHELL := /bin/bash
STACK ?= dev
PYTEST_ARGS ?=
WITH_ENV := source .toolchain/env.sh &&

.PHONY: toolchain up down preview test test-unit test-e2e test-k8s cluster cluster-down bench serve lint typecheck check

toolchain:  ## build or reuse every piece of the toolchain (idempotent, cached outside the repo)
	@bash tools/toolchain.sh

up: toolchain  ## deploy the stack (default dev) and print where it answers
	@$(WITH_ENV) bash tools/stack.sh up $(STACK)

down: toolchain  ## destroy the stack's resources (the stack and its config stay)
	@$(WITH_ENV) bash tools/stack.sh down $(STACK)

cluster: toolchain  ## a local three-node Kubernetes for the prod-local stack (tools/cluster.sh; warm: seconds)
	@$(WITH_ENV) bash tools/cluster.sh up

cluster-down:  ## stop the local cluster and restore every host setting it changed
	@{ source .toolchain/env.sh 2>/dev/null || true; } && bash tools/cluster.sh down

preview: toolchain
	@$(WITH_ENV) bash tools/stack.sh preview $(STACK)

test: toolchain  ## every test but the local cluster's (make test-k8s; CI runs both): unit, integration, e2e, browser
	@$(WITH_ENV) python -m pytest -m "not k8s" $(PYTEST_ARGS)

test-unit: toolchain
	@$(WITH_ENV) python -m pytest tests/unit $(PYTEST_ARGS)

lint: toolchain  ## ruff (pyflakes, pycodestyle, bugbear, bandit, naming, imports): settings in pyproject.toml
	@$(WITH_ENV) ruff check .

typecheck: toolchain  ## mypy over infra/, stacks/, service/, tools/
	@$(WITH_ENV) mypy

check: lint typecheck  ## the fast gate: lint, types and the unit tests (seconds once the toolchain is cached)
	@$(WITH_ENV) python -m pytest -q -m unit tests/unit $(PYTEST_ARGS)

test-k8s: toolchain  ## the tests on the local three-node Kubernetes (started and stopped for the run; it changes host settings)
	@$(WITH_ENV) python -m pytest -m k8s $(PYTEST_ARGS)

test-e2e: toolchain
	@$(WITH_ENV) python -m pytest -m e2e $(PYTEST_ARGS)

bench: toolchain  ## service benchmarks, printed as ratios against baselines measured in the same run
	@$(WITH_ENV) python -m bench.service_bench
	@$(WITH_ENV) python -m bench.leak_bench
	@$(WITH_ENV) python -m bench.drill_rto
	@$(WITH_ENV) python -m bench.dynamic_bench
