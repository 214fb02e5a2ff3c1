# Every target creates .venv/ (if needed) and installs the project with its dev tools first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser test lint typecheck unit integration live demo lab lab-down bench chaos cloud-local package deploy clean

install: $(STAMP) browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Debian's Chromium for the browser tests (tests/integration/cloud/test_settings_page_browser.py). Installed when
## missing and we are root (CI is); otherwise a note, and those tests fail saying what to run.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
	      && echo "installed chromium for the browser tests"; \
	  else \
	    echo "note: chromium is missing and this is not root: run 'sudo apt-get install -y chromium' (browser tests need it)"; \
	  fi; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

## The whole suite: lint, types, then every tier (unit, integration on loopback, live on the Asterisk lab).
test: lint typecheck
	$(PY) -m pytest -q -rs

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q -m integration

live: install
	$(PY) -m pytest -q -rs -m live

## make demo [PBX=lab] [ARGS=--once]: the whole product on this machine (sandbox/demo); PBX=lab uses the real
## Asterisk lab instead of the recorded-call simulator.
demo: install
	$(PY) -m sandbox.demo $(if $(PBX),--pbx $(PBX)) $(ARGS)

## A real Asterisk 22 (the customer's PBX) plus a second instance playing phones and carrier.
lab: install
	$(PY) -m sandbox.pbx_lab up

lab-down: install
	$(PY) -m sandbox.pbx_lab down

## The whole cloud on this machine: Chalice REST + websocket routes behind a local API Gateway, moto as AWS.
cloud-local: install
	$(PY) -m sandbox.cloud_local $(ARGS)

## The fault suite (docs/reliability.md): 300 calls through fake AMI → edge-agent → cloud-local → the Bitrix24
## emulator while the websocket is cut, the agent SIGKILLed, AMI dropped and Bitrix24 rate limited and down; then
## an hour away, compressed. About 15 minutes; prints a table, exits 1 on a lost, wrong or duplicated call.
chaos: install
	$(PY) -m sandbox.chaos $(ARGS)

## AWS: build both Chalice apps for STAGE (build/STAGE/), then deploy them (docs/deploy.md). ARGS: --dry-run,
## --artifacts-bucket B, --param Key=Value, --region R.
STAGE ?= dev
package: install
	$(PY) -m infra.deploy --stage $(STAGE) --package-only

deploy: install
	$(PY) -m infra.deploy --stage $(STAGE) $(ARGS)

## make bench [LONG=1]: every figure of docs/performance.md, in a few minutes; LONG=1 runs the longer defaults
## (10 s of calls at each rate, a 30 s agent window). Each module takes --help for more.
bench: install
	$(PY) -m bench.interpreter_throughput
	$(PY) -m bench.recording_upload
	$(PY) -m bench.cold_start
	$(PY) -m bench.cloud_handler
	$(PY) -m bench.agent_load $(if $(LONG),--window 30,--window 15)
	$(PY) -m bench.crm_latency $(if $(LONG),,--seconds 4)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
