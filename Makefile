# The two commands a fresh machine needs: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Two installs: the runtime alone (what `make demo` and a user need), and the test extra on top (torch, ray, faiss,
# browsers' drivers: gigabytes a demo does not need).
RUNTIME := $(VENV)/.installed-runtime-$(SUM)
TESTING := $(VENV)/.installed-test-$(SUM)

.PHONY: venv demo test lint bench clean-venv pg-server browser-deps

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.installed-runtime-*
	touch $(RUNTIME)

$(TESTING): $(RUNTIME)
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-test-*
	touch $(TESTING)

venv: $(TESTING)

demo: $(RUNTIME)
	$(BIN)/python -m safeset.demo

# Headless-Chromium tests (report, review page) use Debian's browser and driver, never a downloaded one.
browser-deps:
	@if ! command -v chromium >/dev/null || ! test -x /usr/bin/chromedriver; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
		else echo "chromium/chromium-driver missing (apt-get install chromium chromium-driver as root): browser tests will skip"; fi; \
	fi

# The case store's tests start a throwaway PostgreSQL server; install Debian's when missing (root only).
pg-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -q && apt-get install -y -q postgresql) || \
	    echo "note: PostgreSQL not installed (needs root); its case store tests will be skipped"; }

test: $(TESTING) pg-server browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(TESTING)
	$(BIN)/ruff check .

bench: $(TESTING)
	$(BIN)/python benchmarks/bench_scan.py

clean-venv:
	rm -rf $(VENV)
