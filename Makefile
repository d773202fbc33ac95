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
# cargo-lambda and zig, for the release builds (`make release`, `make package`).
PACKAGE_VENV := $(VENV)/package
CARGO ?= cargo

.PHONY: help setup debian venv lint-venv build lint lint-template fmt test demo clean release package test-package test-sam bench bench-venv

help:
	@echo "make demo   deploy, update and delete the whole stack against the local bench, on the existing EKS cluster and on one the stack creates (DEMO=existing or DEMO=new for one path)"
	@echo "make test   install what is missing, then fmt --check, clippy -D warnings and every test"
	@echo "make fmt    format the code"
	@echo "make bench  our functions against a Python baseline (start-up, memory, size, API calls, scale): bench/RESULTS.md"
	@echo "make lint-template   cfn-lint, sam validate --lint and checkov on templates/template.yaml"
	@echo "make release   the functions as Lambda bootstraps for this machine, release profile (target/lambda/<binary>/bootstrap; ARCH=arm64|x86_64: target/lambda-<arch>/)"
	@echo "make package BUCKET=name [PREFIX=p] [REGION=r] [ARCH=arm64|x86_64] [BUCKET_PER_REGION=1 REGIONS='r1 r2'] [STACK_NAME=s] [PARAMS='Name=Value ...']"
	@echo "               release build (arm64 where it builds), zips, dist/template.json, dist/launch-policy.json, upload commands, quick-create URL"

# Everything a fresh machine needs: Debian packages (only where missing) and the Python venv.
setup: venv bench-venv

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

$(PACKAGE_VENV)/.installed: scripts/requirements-package.txt
	python3 -m venv $(PACKAGE_VENV)
	$(PACKAGE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-package.txt
	touch $@

lint-template: lint-venv
	LINT_VENV=$(LINT_VENV) CHECKOV_VENV=$(CHECKOV_VENV) bash scripts/lint-template.sh

fmt:
	$(CARGO) fmt --all

test: setup lint lint-template test-package test-sam
	$(CARGO) test --workspace

demo: setup lint-venv
	@# The same targets as `make test` builds, so the two share one build (same feature resolution).
	$(CARGO) build --quiet --workspace --bins --tests
	$${CARGO_TARGET_DIR:-target}/debug/demo $(DEMO)

# The release build alone, for this machine by default (target/lambda/<binary>/bootstrap, what the
# bench and the benchmarks run); ARCH=arm64 or x86_64 for another (target/lambda-<arch>/).
release: $(PACKAGE_VENV)/.installed
	PACKAGE_VENV=$(PACKAGE_VENV) ARCH=$(or $(ARCH),host) bash scripts/release.sh

# Lambda zips, the packaged template, the Marketplace launch policy and the quick-create URL, in
# dist/; uploads nothing (scripts/package.py).
REGION ?= us-east-1
ifneq ($(filter package,$(MAKECMDGOALS)),)
ifeq ($(BUCKET),)
$(error make package: give the S3 bucket: make package BUCKET=<name> (before a 13-minute build))
endif
endif
# ARCH: arm64 when its Rust target is installed (what the template asks for), else x86_64.
PACKAGE_ARCH = $(or $(ARCH),auto)
package: $(PACKAGE_VENV)/.installed $(LINT_VENV)/.installed
	PACKAGE_VENV=$(PACKAGE_VENV) ARCH=$(PACKAGE_ARCH) bash scripts/release.sh
	$(LINT_VENV)/bin/python scripts/package.py --bucket '$(BUCKET)' --region '$(REGION)' \
	  --bin-dir "$$(ARCH=$(PACKAGE_ARCH) bash scripts/release.sh --print-dir)" \
	  $(if $(filter arm64 x86_64,$(ARCH)),--arch '$(ARCH)') \
	  $(if $(PREFIX),--prefix '$(PREFIX)') $(if $(BUCKET_PER_REGION),--bucket-per-region) \
	  $(if $(REGIONS),--regions '$(REGIONS)') $(if $(STACK_NAME),--stack-name '$(STACK_NAME)') \
	  $(foreach p,$(PARAMS),--param '$(p)')

# The packaging after the build, on fake bootstraps: seconds, no release build.
test-package: $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/python -m unittest discover -s scripts -p test_package.py

# `sam build` as users run it (the real SAM CLI and cargo-lambda, samconfig.toml, the template)
# through a stand-in cargo that compiles nothing: about 10 s (scripts/test_sam_build.py).
test-sam: $(LINT_VENV)/.installed $(PACKAGE_VENV)/.installed
	PACKAGE_VENV=$(PACKAGE_VENV) $(LINT_VENV)/bin/python -m unittest discover -s scripts -p test_sam_build.py

# The benchmarks' Python baseline (bench/baseline/: crhelper + boto3 + kubernetes under awslambdaric):
# one pip install of pinned versions. `make test` needs it too (the benchmarks' smoke pass).
BASELINE_VENV := $(VENV)/baseline
ITERATIONS ?= 10

bench-venv: $(BASELINE_VENV)/.installed

$(BASELINE_VENV)/.installed: bench/requirements.txt | debian
	python3 -m venv $(BASELINE_VENV)
	$(BASELINE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# Our functions (release, `make release` for this machine) against the Python baseline, side by
# side; writes bench/RESULTS.md. The harness itself is a debug build (it shares make test's build).
bench: setup
	$(MAKE) --no-print-directory release ARCH=host
	$(CARGO) build --quiet --workspace --bins --tests
	@target=$${CARGO_TARGET_DIR:-target}; mkdir -p $$target/bench/bin; \
	for bootstrap in $$target/lambda/*/bootstrap; do \
	  ln -sf "$$(realpath $$bootstrap)" "$$target/bench/bin/$$(basename $$(dirname $$bootstrap))"; \
	done; \
	echo "bench: $(ITERATIONS) runs per measurement (ITERATIONS=n to change)"; \
	FUNCTION_BIN_DIR=$$target/bench/bin $$target/debug/bench --iterations $(ITERATIONS) \
	  --binaries "release builds of make release (cargo lambda build --release, this machine's architecture)"

clean:
	$(CARGO) clean
	rm -rf $(VENV)
