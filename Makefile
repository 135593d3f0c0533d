# churn-stream: every target builds the virtualenv from the committed lock file first.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
# The per-event feature code compiled with mypyc (stream/native.py); rebuilt when it changes.
NATIVE := stream/native.json

.PHONY: demo train test unit lint schemas clean

$(BIN)/churn: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen
	@touch $@

$(NATIVE): stream/features.py stream/featurize.py stream/native.py stream/native_build.py $(BIN)/churn
	$(BIN)/python -m stream.native_build

## The main job: the whole loop on embedded defaults, live; ends by itself.
demo: $(BIN)/churn $(NATIVE)
	$(BIN)/churn demo

train: $(BIN)/churn $(NATIVE)
	$(BIN)/churn train

## The whole test suite (unit, agent, integration, end-to-end).
test: $(BIN)/churn $(NATIVE)
	$(BIN)/pytest

unit: $(BIN)/churn $(NATIVE)
	$(BIN)/pytest -m unit

schemas: $(BIN)/churn
	$(BIN)/churn schemas export schemas/json

clean:
	rm -rf $(VENV) .churn .pytest_cache build $(NATIVE) stream/*.so
