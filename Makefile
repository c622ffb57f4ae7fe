# Everything runs from the project's own virtualenv in .venv, created and
# refreshed on demand from requirements-dev.txt (which includes requirements.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv chromium test unit integration e2e bench lint clean servicebus demo up seed soak docs conformance

AZURITE := tools/azurite/node_modules/.package-lock.json
MERMAID := tools/mermaid/node_modules/.package-lock.json
CHECKOV := tools/checkov/venv/.installed

venv: $(STAMP) $(AZURITE) $(MERMAID) $(CHECKOV) chromium

# The live view's browser test (tests/e2e/test_view_browser.py) drives Debian's Chromium through
# Playwright: Playwright's own browser download is not reachable from here.
# apt-get needs root: through sudo when make runs as another user.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

# checkov (tests/infra scans infra/) in a virtualenv of its own: its pins (packaging<24,
# pycep-parser==0.5.1) must not downgrade the project's.
$(CHECKOV): tools/checkov/requirements.txt
	test -x tools/checkov/venv/bin/python || $(PYTHON) -m venv tools/checkov/venv
	tools/checkov/venv/bin/python -m pip install --quiet -r tools/checkov/requirements.txt
	touch $(CHECKOV)

# Azurite is pinned by tools/azurite/package-lock.json and installed exactly from it.
$(AZURITE): tools/azurite/package.json tools/azurite/package-lock.json
	npm ci --prefix tools/azurite --no-audit --no-fund --silent
	touch $(AZURITE)

# Mermaid, for the live view's map (devstack/view.py serves its browser bundle; no CDN), pinned like Azurite.
$(MERMAID): tools/mermaid/package.json tools/mermaid/package-lock.json
	npm ci --prefix tools/mermaid --no-audit --no-fund --silent
	touch $(MERMAID)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

test: venv lint
	$(PY) -m pytest

# The same tests in three parts. unit: pure rules and use cases on fakes, the app's bindings and
# its architecture (no infrastructure, seconds). integration: real Azurite and our emulators through
# the real SDKs, devhost, the local stack. e2e: the whole app on devhost, the bad-input corpus and
# the short chaos soak.
unit: venv
	$(PY) -m pytest tests/unit tests/contract

integration: venv
	$(PY) -m pytest tests/integration tests/emulators tests/devhost tests/devstack

e2e: venv
	$(PY) -m pytest tests/e2e tests/hostile tests/soak

lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

# The choreography map, derived from the code, into README.md (a unit test fails when it is stale).
docs: venv
	$(PY) -m ops map --readme

bench: venv
	$(PY) -m benchmarks.servicebus
	$(PY) -m benchmarks.deliveries
	$(PY) -m benchmarks.payments

# The main job on embedded defaults: a fresh in-memory stack, ~20 deliveries, exit 0 only if all
# ended as expected.
demo: venv
	$(PY) -m devstack demo

# The chaos soak: 1,000 deliveries and 20 payment files on a durable stack while devhost and the
# Service Bus emulator are SIGKILLed and Azurite paused; exit 0 only if nothing was lost or doubled.
# SOAK_ARGS passes options through, e.g. make soak SOAK_ARGS="--seed 7 --deliveries 200".
soak: venv
	$(PY) -m devstack soak $(SOAK_ARGS)

# Azurite, both emulators and devhost on the usual ports until Ctrl-C (like `func start`).
up: venv
	$(PY) -m devstack up

# Reference data (drone fleet, payment reference table) into AzureWebJobsStorage (default Azurite).
seed: venv
	$(PY) -m devstack seed

# Microsoft's own azure-servicebus live tests (from the pinned sdist, checksum-verified) against a
# fresh emulator through tools/conformance/shim; prints a table per file and the conformance figure.
# Not part of make test: some tests sleep for five minutes. CONFORMANCE_ARGS passes options through.
conformance: venv
	$(PY) -m tools.conformance $(CONFORMANCE_ARGS)

# Run the Service Bus emulator in the foreground with this app's entities.
servicebus: venv
	$(PY) -m emulators.servicebus --config emulators/servicebus/config.json

clean:
	rm -rf .devstack .pytest_cache .conformance
