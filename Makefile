# `make demo` and `make test` are all a fresh machine needs (Python 3.12 must be installed).
SHELL := /bin/bash
PYTHON312 ?= $(shell command -v python3.12 2>/dev/null || echo python3.12)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_out

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt
	PYENV_VERSION=$${PYENV_VERSION:-3.12.1} $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

test: setup
	$(PY) -m pytest -n 2 --durations=15 tests

demo: setup
	bash launch/demo.sh $(DEMO_DIR)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
