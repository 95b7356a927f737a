# `make demo` and `make test` are all a fresh machine needs (Python 3.12 must be installed).
# `make setup ACCEL=cuda` (NVIDIA GPUs) or `make setup ACCEL=tpu` (Cloud TPU VMs) installs the
# matching jax build; later make calls keep the accelerator the last setup chose.
SHELL := /bin/bash
PYTHON312 ?= $(shell command -v python3.12 2>/dev/null || echo python3.12)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_out
ACCEL ?= $(shell cat $(VENV)/.accel 2>/dev/null || echo cpu)
REQ_cpu := requirements.txt
REQ_cuda := requirements-cuda.txt
REQ_tpu := requirements-tpu.txt
REQ := $(REQ_$(ACCEL))
ifeq ($(REQ),)
$(error ACCEL must be cpu, cuda or tpu, not '$(ACCEL)')
endif
# Plugins of the other accelerators, removed when switching (a CPU venv must not load them).
OTHER_PLUGINS_cpu := jax-cuda12-plugin jax-cuda12-pjrt libtpu
OTHER_PLUGINS_cuda := libtpu
OTHER_PLUGINS_tpu := jax-cuda12-plugin jax-cuda12-pjrt
STAMP := $(VENV)/.installed-$(ACCEL)

.PHONY: setup test test-fast lint demo app devices clean

setup: $(STAMP)

$(STAMP): $(REQ) requirements.txt requirements-test.txt pyproject.toml
	PYENV_VERSION=$${PYENV_VERSION:-3.12.1} $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(REQ) -r requirements-test.txt
	$(PY) -m pip uninstall -q -y $(OTHER_PLUGINS_$(ACCEL)) 2>/dev/null || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	echo $(ACCEL) > $(VENV)/.accel
	touch $@

# What jax sees: backend, devices, processes; warns when an accelerator is there but unused.
devices: setup
	$(PY) -m brppnet_jax.runtime.devices

# The whole suite, as CI runs it (under 15 minutes on 2 cores).
test: setup
	$(PY) -m pytest -n 2 --dist loadgroup --durations=15 tests

# The edit loop's tier: everything but the tests marked slow (training runs, processes
# killed on purpose, a real browser), under 3 minutes. CI runs `make test`, never only this.
test-fast: setup
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow" tests

lint: setup
	$(PY) -m ruff check brppnet_jax tests configs benchmarks

demo: setup
	bash launch/demo.sh $(DEMO_DIR)

# The web app (http://127.0.0.1:7860) serving the network that `make demo` trained.
app: setup
	$(PY) -m brppnet_jax.protect.app --workdir=$(DEMO_DIR)/workdir

clean:
	rm -rf $(VENV) $(DEMO_DIR)
