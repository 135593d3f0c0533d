# churn-stream: every target builds the virtualenv from the committed lock file first.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo train test unit lint schemas clean

$(BIN)/churn: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen
	@touch $@

## The main job: the whole loop on embedded defaults, live; ends by itself.
demo: $(BIN)/churn
	$(BIN)/churn demo

train: $(BIN)/churn
	$(BIN)/churn train

## The whole test suite (unit, agent, integration, end-to-end).
test: $(BIN)/churn
	$(BIN)/pytest

unit: $(BIN)/churn
	$(BIN)/pytest -m unit

schemas: $(BIN)/churn
	$(BIN)/churn schemas export schemas/json

clean:
	rm -rf $(VENV) .churn .pytest_cache
