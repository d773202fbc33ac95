# The commands users and CI run. `make test` is what CI runs (through .ci/run); `make demo` runs the
# stack's custom resources against the local bench.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
# The template linters' venvs, inside .venv (ignored by git, removed by clean): their boto3 pins
# conflict with the bench's and with each other's (see tests/bench/requirements-lint.txt).
LINT_VENV := $(VENV)/lint
CHECKOV_VENV := $(VENV)/checkov
CARGO ?= cargo

.PHONY: help setup debian venv lint-venv build lint lint-template fmt test demo clean

help:
	@echo "make demo   run the stack's custom resources against the local bench (moto, Lambda Runtime API, CloudFormation over HTTP)"
	@echo "make test   install what is missing, then fmt --check, clippy -D warnings and every test"
	@echo "make fmt    format the code"
	@echo "make lint-template   cfn-lint, sam validate --lint and checkov on templates/template.yaml"

# Everything a fresh machine needs: Debian packages (only where missing) and the Python venv.
setup: venv

debian:
	@bash scripts/install-debian-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: tests/bench/requirements.txt | debian
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

lint-venv: $(LINT_VENV)/.installed $(CHECKOV_VENV)/.installed

$(LINT_VENV)/.installed: tests/bench/requirements-lint.txt | debian
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements-lint.txt
	touch $@

$(CHECKOV_VENV)/.installed: tests/bench/requirements-checkov.txt | debian
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements-checkov.txt
	touch $@

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-template: lint-venv
	LINT_VENV=$(LINT_VENV) CHECKOV_VENV=$(CHECKOV_VENV) bash scripts/lint-template.sh

fmt:
	$(CARGO) fmt --all

test: setup lint lint-template
	$(CARGO) test --workspace

demo: setup lint-venv
	@# The same targets as `make test` builds, so the two share one build (same feature resolution).
	$(CARGO) build --quiet --workspace --bins --tests
	$${CARGO_TARGET_DIR:-target}/debug/demo

clean:
	$(CARGO) clean
	rm -rf $(VENV)
