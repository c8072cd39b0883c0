# Two commands: `make run` (the demo) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/gateway.toml

.PHONY: run test test-servers lint check-config bench-ldap bench-carddav bench-poll clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/xcap-gateway serve --config $(CONFIG)

check-config: $(BIN)/.installed
	$(BIN)/xcap-gateway check-config --config $(CONFIG)

lint: $(BIN)/.installed
	$(BIN)/ruff check gateway connectors tests bench
	$(BIN)/mypy

# Real servers for the integration tests: slapd from Debian (installed when missing; needs root).
test-servers:
	@command -v /usr/sbin/slapd >/dev/null && command -v ldapsearch >/dev/null || { \
	    echo "installing slapd and ldap-utils"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null; }

test: $(BIN)/.installed test-servers lint
	$(BIN)/pytest -q

bench-ldap: $(BIN)/.installed test-servers
	$(BIN)/python -m bench.ldap_pull

bench-carddav: $(BIN)/.installed
	$(BIN)/python -m bench.carddav_sync

bench-poll: $(BIN)/.installed test-servers
	@command -v nginx >/dev/null && command -v wrk >/dev/null || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
	$(BIN)/python -m bench.poll

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
