# The two commands: `make run` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
export FLASK_APP := app:main_app
APT_PACKAGES := libmagic1 clamav clamav-daemon clamav-testfiles chromium prometheus util-linux
PORT ?= 5000

.PHONY: install install-dev system-deps services run test bench bench-large soak clean

.venv/bin/python:
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip

.venv/.installed: requirements.txt .venv/bin/python
	$(PIP) install --quiet -r requirements.txt
	touch $@

.venv/.installed-dev: requirements-dev.txt .venv/.installed
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: .venv/.installed

install-dev: .venv/.installed-dev

# Debian packages the tests use; installed only when missing, so a warm machine skips apt.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { echo "error: apt-get install$$missing failed"; exit 1; }; \
	fi

# PostgreSQL and Redis come with this kind of machine; start them if they are down.
services:
	@bash scripts/ensure-services

run: install
	@bash scripts/run-local $(PORT)

test: system-deps install-dev services
	.venv/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Run as modules: a script's own folder first on sys.path would let bench/queue.py shadow the
# standard library's queue module.
# Every benchmark, then one table of the performance issue's figures with verdicts (bench/report.py).
bench: system-deps install-dev services
	$(PY) -m bench.report

# Ten times the data (5M submissions, 15M ledger rows, 10M Kajabi events): the seeds alone take
# tens of minutes, so this is apart from `make bench`.
bench-large: system-deps install-dev services
	$(PY) -m bench.report --large

# The storm of tests/reliability/ at 20,000 hooks (`make test` runs it at 2,000); not run by CI.
# Figures: tests/artifacts/storm-20000.json (docs/reliability.md).
soak: system-deps install-dev services
	STORM_HOOKS=20000 $(PY) -m pytest -q -p no:cacheprovider -s tests/reliability/test_storm.py

clean:
	rm -rf .venv instance tests/artifacts
