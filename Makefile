# Every target creates .venv/ (if needed) and installs the project with its dev tools first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install system-packages test unit-later lint typecheck unit integration live demo lab lab-down bench chaos cloud-local package deploy clean

install: $(STAMP) system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Debian's packages the tiers need, so that nothing is skipped: chromium (browser tests), lame (MP3 recordings),
## mariadb-server and postgresql (CDR databases the agent reads), faketime (the unit tier at later dates). Installed
## when missing and we are root (CI is); otherwise a note, and under CI those tests fail saying what to run.
SYSTEM_PACKAGES := chromium lame mariadb-server postgresql faketime
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get install -y -q $$missing >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; } \
	      && echo "installed Debian packages for the tests:" $$missing; \
	  else \
	    echo "note: not root, so not installed: $$missing (run 'sudo apt-get install -y $$missing'; tests need them)"; \
	  fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

## The whole suite: lint, types, then every tier (unit, integration on loopback, live on the Asterisk lab), then
## the unit tier again at later dates.
test: lint typecheck
	$(PY) -m pytest -q -rs
	$(MAKE) --no-print-directory unit-later

## The unit tier with the clock 45 and 400 days ahead (Debian's faketime, for this process and its children): a
## test that fixes a date must fix the clock of the code under test too, or build its data relative to now.
LATER ?= +45d +400d
unit-later: install
	@command -v faketime >/dev/null || { echo "faketime is missing: run 'make install' as root (Debian package faketime)"; exit 1; }
	@for shift in $(LATER); do \
	  echo "unit tier with the clock at $$shift (faketime)"; \
	  faketime -f "$$shift" $(PY) -m pytest -q -p no:cacheprovider tests/unit || exit 1; \
	done

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
