# churn-stream: every target builds the virtualenv from the committed lock file first.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo train test unit lint schemas clean test-tools

$(BIN)/churn: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen
	@touch $@

## The main job: the whole loop on embedded defaults, live; ends by itself.
demo: $(BIN)/churn
	$(BIN)/churn demo

train: $(BIN)/churn
	$(BIN)/churn train

## The outside programs the tests run (Debian's kcat; kubectl from kubernetes-client for the manifests' dry run;
## prometheus for promtool and a live Prometheus); Apache Kafka's jars come from Maven Central in the tests.
test-tools:
	@command -v kcat >/dev/null 2>&1 || { echo "installing kcat (Debian)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat) >build-tools.log 2>&1 \
	  || echo "kcat could not be installed (see build-tools.log): its tests will say so"; }
	@command -v kubectl >/dev/null 2>&1 || { echo "installing kubectl (Debian: kubernetes-client)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client) >>build-tools.log 2>&1 \
	  || echo "kubectl could not be installed (see build-tools.log): its tests will say so"; }
	@command -v promtool >/dev/null 2>&1 || { echo "installing prometheus (Debian: promtool and prometheus)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >>build-tools.log 2>&1 \
	  || echo "prometheus could not be installed (see build-tools.log): the alert rule tests will say so"; }

## The whole test suite (lint, unit, integration and end to end, on Apache Kafka and the embedded broker);
## two processes, each broker tier in one of them.
test: $(BIN)/churn test-tools lint
	$(BIN)/pytest -n 2 --dist loadgroup

## Lint, format, import contracts and types (mypy reads its paths from [tool.mypy] in pyproject.toml).
lint: $(BIN)/churn
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

unit: $(BIN)/churn
	$(BIN)/pytest -m unit

schemas: $(BIN)/churn
	$(BIN)/churn schemas export schemas/json

clean:
	rm -rf $(VENV) .churn .pytest_cache build build-tools.log
