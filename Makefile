# sdsbench top-level targets. `make setup` is the one-command set-up (idempotent).
SHELL := /bin/bash
PY_MAIN := .venv/main/bin/python
STATE_DIR ?= .run/services

.PHONY: setup services-up services-down services-status test

setup:
	bash env/setup.sh

services-up: setup
	$(PY_MAIN) scripts/services.py up --state-dir $(STATE_DIR)

services-down:
	@if [ -x $(PY_MAIN) ]; then $(PY_MAIN) scripts/services.py down --state-dir $(STATE_DIR); fi

services-status:
	$(PY_MAIN) scripts/services.py status --state-dir $(STATE_DIR)

test:
	bash env/setup.sh && $(PY_MAIN) -m pytest -q tests
