# Two commands: `make run` (the demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/gateway.toml

.PHONY: run test test-servers lint check-config bench bench-tools bench-ldap bench-carddav bench-poll bench-search bench-serve soak clean

# What serving needs, and nothing else (`make run`, `make check-config`).
$(BIN)/.served: pyproject.toml
	@echo "installing xcap-gateway and what it needs to serve into $(VENV) (pip install -e .)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# What the tests and linters need besides (`make test`): pytest, ruff, mypy, Radicale,
# Xandikos, hadolint and more, a few hundred MB.
$(BIN)/.installed: $(BIN)/.served
	@echo "installing the test and lint tools into $(VENV) (pip install -e '.[test]')"
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.served
	$(BIN)/xcap-gateway serve --config $(CONFIG)

check-config: $(BIN)/.served
	$(BIN)/xcap-gateway check-config --config $(CONFIG)

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway connectors tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

# Real servers for the integration tests, from Debian, installed when missing (as root):
# slapd and ldap-utils; podman, runc and debootstrap for the container test; postgresql for
# the PostgreSQL store (a private instance per test session, tests/pg).
DEBIAN_TEST_PACKAGES := slapd ldap-utils podman runc debootstrap chromium postgresql
test-servers:
	@missing=""; \
	for tool in /usr/sbin/slapd ldapsearch podman runc debootstrap chromium; do \
	    command -v $$tool >/dev/null || missing=yes; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing=yes; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages for the test servers: $(DEBIAN_TEST_PACKAGES) (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_TEST_PACKAGES) >/dev/null; \
	elif [ -n "$$missing" ]; then \
	    echo "not root: not installing $(DEBIAN_TEST_PACKAGES); the tests that need them are skipped"; \
	fi

# PyICU (sort_locale's collations) builds against Debian's libicu-dev with pkg-config and
# g++, installed when missing (as root); pip keeps the built wheel for the next venv.
ICU_BUILD_PACKAGES := libicu-dev pkg-config g++
$(BIN)/.icu: $(BIN)/.installed
	@if ! pkg-config --exists icu-i18n 2>/dev/null || ! command -v g++ >/dev/null; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages to build PyICU: $(ICU_BUILD_PACKAGES) (apt-get)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(ICU_BUILD_PACKAGES) >/dev/null; \
	    fi; \
	fi
	@echo "installing PyICU into $(VENV) (pip install -e '.[icu]'; built once, then cached by pip)"
	$(BIN)/pip install --quiet -e '.[icu]'
	touch $@

# python-ldap (the `ldap-c` extra: [sources.X] client = "python-ldap") builds against Debian's
# libldap and libsasl2 headers with gcc, installed when missing (as root); make test runs the
# LDAP connector's tests with both clients.
LDAP_C_BUILD_PACKAGES := libldap2-dev libsasl2-dev python3-dev gcc
$(BIN)/.ldap-c: $(BIN)/.installed
	@if [ ! -e /usr/include/ldap.h ] || [ ! -e /usr/include/sasl/sasl.h ] \
	    || ! command -v gcc >/dev/null || ! test -e "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("INCLUDEPY"))')/Python.h"; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages to build python-ldap: $(LDAP_C_BUILD_PACKAGES) (apt-get)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(LDAP_C_BUILD_PACKAGES) >/dev/null; \
	    fi; \
	fi
	@echo "installing python-ldap into $(VENV) (pip install -e '.[ldap-c]')"
	$(BIN)/pip install --quiet -e '.[ldap-c]'
	touch $@

test: $(BIN)/.installed $(BIN)/.icu $(BIN)/.ldap-c test-servers lint
	$(BIN)/pytest -q

# Every issue-15 measure beside its reference (nginx, bare aiohttp, cat, ldapsearch), one
# table with the date and the machine; about 20 minutes.
bench: $(BIN)/.installed $(BIN)/.icu $(BIN)/.ldap-c test-servers bench-tools
	$(BIN)/python -m bench.all

bench-tools:
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }

bench-ldap: $(BIN)/.installed $(BIN)/.ldap-c test-servers
	$(BIN)/python -m bench.ldap_pull

bench-carddav: $(BIN)/.installed
	$(BIN)/python -m bench.carddav_sync

bench-poll: $(BIN)/.installed test-servers
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
	$(BIN)/python -m bench.poll

bench-search: $(BIN)/.installed
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
	$(BIN)/python -m bench.search

bench-serve: $(BIN)/.installed
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
	$(BIN)/python -m bench.serve

# Issue 18: 10,000 phones for an hour (compressed: each polls every 60 s) against slapd with
# 100,000 people and Radicale books, with upstream churn and faults on a schedule; prints a
# table, writes soak.json, exits 1 when an invariant breaks. SOAK_ARGS="--seconds 600" etc.
soak: $(BIN)/.installed $(BIN)/.ldap-c test-servers
	$(BIN)/python -m bench.soak --json soak.json $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
