# The commands users and CI run. `make test` is what CI runs (through .ci/run); `make demo` runs the
# stack's custom resources against the local bench.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: help setup debian venv build lint fmt test demo clean

help:
	@echo "make demo   run the stack's custom resources against the local bench (moto, Lambda Runtime API, CloudFormation over HTTP)"
	@echo "make test   install what is missing, then fmt --check, clippy -D warnings and every test"
	@echo "make fmt    format the code"

# Everything a fresh machine needs: Debian packages (only where missing) and the Python venv.
setup: venv

debian:
	@bash scripts/install-debian-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: tests/bench/requirements.txt | debian
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: setup lint
	$(CARGO) test --workspace

demo: setup
	$(CARGO) run --quiet -p system-tests --bin demo

clean:
	$(CARGO) clean
	rm -rf $(VENV)
