# qt45-colony — the README's commands. Everything installs what is missing first.
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := mesa-vulkan-drivers libvulkan1 iproute2 chromium wrk
NODES    ?= 3
PORT     ?= 8450

.PHONY: run test test-slow lint bench setup apt clean compose-test

## make run: set up, then launch a local colony with the dashboard (Ctrl-C stops it)
run: setup
	$(BIN)/colony up -n $(NODES) --base-port $(PORT)

## make test: set up, then run the test suite
test: setup
	$(BIN)/pytest

## make test-slow: the long tests (full synthesis task set, soak tests)
test-slow: setup
	$(BIN)/pytest -m slow

## make lint: ruff, mypy and the import layers (import-linter)
lint: setup
	$(BIN)/ruff check protocol node colony tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: run the benchmark suites and write BENCHMARKS.md
bench: setup
	$(BIN)/colony bench --suite all --write

## make compose-test: the real 3-node compose test with podman as the engine (slow, needs root)
compose-test:
	$(SUDO) deploy/compose-test.sh

setup: apt $(VENV)/.installed

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .colony .pytest_cache .mypy_cache .ruff_cache *.egg-info
