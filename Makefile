PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-postgres bench install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/memproxy serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-postgres

# Every suite that starts memproxy servers, again with each server on PostgreSQL.
test-postgres: $(STAMP)
	MEMPROXY_TEST_BACKEND=postgres $(BIN)/python -m pytest tests/chat tests/api tests/providers tests/clients \
		tests/test_coordination.py tests/test_http1.py tests/test_upstream_tls.py tests/test_readme.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .memproxy .pytest_cache
