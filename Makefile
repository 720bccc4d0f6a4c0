PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Serving needs the package alone; tests and benchmarks add their extras on top.
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP := $(VENV)/.installed-test

.PHONY: serve test test-postgres test-workers bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(SERVE_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(SERVE_STAMP) $(TEST_STAMP)

install: $(TEST_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/memproxy serve $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-postgres
	$(MAKE) test-workers

# Every suite that starts memproxy servers, again with each server on PostgreSQL (the crash suite with half
# its kills; the console's browser tests that store and search; bench's smoke run with --backend postgres).
# Not here: tests/sim (no memproxy server) and tests/test_cli.py (its PostgreSQL test runs in the first pass).
CONSOLE_PG := tests/console/test_console_browser.py::test_agent_memory_chat_runs_context_history_search \
	tests/console/test_console_browser.py::test_context_shows_the_summary_after_a_compaction
# bench's tests whose tools run memproxy on its embedded store or in process whatever the backend: this pass would
# repeat the first one's runs exactly (about a minute and a half).
BENCH_EMBEDDED := test_ab test_steady test_turn_cost test_relay_cost test_store_cost test_soak_figures \
	test_procs_cpu test_fixed_upstream
test-postgres: $(TEST_STAMP)
	MEMPROXY_TEST_BACKEND=postgres $(BIN)/python -m pytest tests/chat tests/api tests/providers tests/clients \
		tests/tools tests/test_coordination.py tests/test_http1.py tests/test_upstream_tls.py tests/test_readme.py \
		tests/resumable/test_resume.py tests/resumable/test_letta_background.py \
		tests/test_metrics.py tests/test_runtime.py tests/crash tests/bench \
		$(BENCH_EMBEDDED:%=--ignore=tests/bench/%.py) $(CONSOLE_PG) $(PYTEST_ARGS)

# Agent suites against `memproxy serve --workers 2` on PostgreSQL and Redis (tests needing the in-process
# runtime skip there).
test-workers: $(TEST_STAMP)
	MEMPROXY_TEST_WORKERS=2 $(BIN)/python -m pytest tests/chat/test_agent_turns.py tests/chat/test_retries.py \
		tests/chat/test_client_tools.py $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .memproxy .pytest_cache
