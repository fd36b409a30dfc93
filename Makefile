# Two commands on a fresh machine: `make demo` (the whole product on SQLite) and `make test` (ruff, mypy and the suite on 2 workers).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install dashboard clean-var

demo: $(STAMP)
	$(BIN)/inspect-app demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

dashboard: $(STAMP)
	$(BIN)/inspect-app dashboard

install: $(STAMP)

# torch and torchvision first, pinned, so that pip takes the builds on this machine's disk instead of resolving anew.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean-var:
	rm -rf var
