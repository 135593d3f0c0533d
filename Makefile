# churn-stream: every target builds the virtualenv from the committed lock file first.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo train test unit lint schemas clean native

$(BIN)/churn: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen
	@touch $@

## The per-event code compiled with mypyc (stream/native.py): a no-op while it is up to date.
native: $(BIN)/churn
	@$(BIN)/python -m stream.native_build

## The main job: the whole loop on embedded defaults, live; ends by itself.
demo: $(BIN)/churn native
	$(BIN)/churn demo

train: $(BIN)/churn native
	$(BIN)/churn train

## The whole test suite (unit, agent, integration, end-to-end).
test: $(BIN)/churn native
	$(BIN)/pytest

unit: $(BIN)/churn native
	$(BIN)/pytest -m unit

schemas: $(BIN)/churn
	$(BIN)/churn schemas export schemas/json

clean:
	rm -rf $(VENV) .churn .pytest_cache build stream/native.json stream/*.so stream/drift/*.so
