# Two commands for a newcomer: `make up` (the dev stack, for real) and `make test` (the whole suite).
SHELL := /bin/bash
STACK ?= dev
PYTEST_ARGS ?=
WITH_ENV := source .toolchain/env.sh &&
# The toolchain tier a stack needs (tools/toolchain.sh says what each tier holds): prod stacks need the
# Kubernetes pieces, dev and existing stacks do not.
STACK_TIER := $(if $(filter prod prod-%,$(STACK)),cluster,dev)

.PHONY: toolchain toolchain-dev toolchain-cluster toolchain-test toolchain-k8s up down preview test test-unit \
	test-e2e test-k8s cluster cluster-down bench serve lint typecheck check

toolchain:  ## build or reuse every piece of the toolchain, every tier (idempotent, cached outside the repo)
	@bash tools/toolchain.sh

# One per tier (or union of tiers), so a make run that names several targets builds it once.
toolchain-dev toolchain-cluster toolchain-test:
	@bash tools/toolchain.sh $(@:toolchain-%=%)
toolchain-k8s:
	@bash tools/toolchain.sh cluster test

up: toolchain-$(STACK_TIER)  ## deploy the stack (default dev) and print where it answers
	@$(WITH_ENV) bash tools/stack.sh up $(STACK)

down: toolchain-$(STACK_TIER)  ## destroy the stack's resources (the stack and its config stay)
	@$(WITH_ENV) bash tools/stack.sh down $(STACK)

cluster: toolchain-cluster  ## a local three-node Kubernetes for the prod-local stack (tools/cluster.sh; warm: seconds)
	@$(WITH_ENV) bash tools/cluster.sh up

cluster-down:  ## stop the local cluster and restore every host setting it changed
	@{ source .toolchain/env.sh 2>/dev/null || true; } && bash tools/cluster.sh down

preview: toolchain-$(STACK_TIER)
	@$(WITH_ENV) bash tools/stack.sh preview $(STACK)

test: toolchain-test  ## every test but the local cluster's (make test-k8s; CI runs both): unit, integration, e2e, browser
	@$(WITH_ENV) python -m pytest -m "not k8s" --durations=20 $(PYTEST_ARGS)

test-unit: toolchain-test
	@$(WITH_ENV) python -m pytest tests/unit $(PYTEST_ARGS)

lint: toolchain-test  ## ruff (pyflakes, pycodestyle, bugbear, bandit, naming, imports): settings in pyproject.toml
	@$(WITH_ENV) ruff check .

typecheck: toolchain-test  ## mypy over infra/, stacks/, service/, tools/
	@$(WITH_ENV) mypy

check: lint typecheck  ## the fast gate: lint, types and the unit tests (seconds once the toolchain is cached)
	@$(WITH_ENV) python -m pytest -q -m unit tests/unit $(PYTEST_ARGS)

test-k8s: toolchain-k8s  ## the tests on the local three-node Kubernetes (started and stopped for the run; it changes host settings)
	@$(WITH_ENV) python -m pytest -m k8s --durations=20 $(PYTEST_ARGS)

test-e2e: toolchain-test
	@$(WITH_ENV) python -m pytest -m e2e $(PYTEST_ARGS)

bench: toolchain-test  ## service benchmarks, printed as ratios against baselines measured in the same run
	@$(WITH_ENV) python -m bench.service_bench
	@$(WITH_ENV) python -m bench.leak_bench
	@$(WITH_ENV) python -m bench.drill_rto
	@$(WITH_ENV) python -m bench.dynamic_bench
