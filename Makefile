# Every target works on a fresh machine with Docker and nothing else prepared
# (.ci/run also installs the system packages a bare machine lacks: debootstrap, musl-tools, ...).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup host-deps venv images images-force test test-unit test-docker lint bench demo cleanup clean

setup: host-deps venv images

# debootstrap, musl-tools, ... (installed when root, else the one command to run is printed)
host-deps:
	bash scripts/host-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,inspect,ray]'
	touch $(STAMP)

# Base (debootstrap, needs root the first time), agent and stubs images; no registry used.
# Unchanged recipes are skipped, so this is cheap to repeat.
images: venv
	$(BIN)/sandbox images build

images-force: venv
	$(BIN)/sandbox images build --force

# The README's test command: unit and integration tests (integration needs Docker).
test: setup
	$(BIN)/pytest -q

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-docker: setup
	$(BIN)/pytest -q -m docker tests/integration

lint: venv
	$(BIN)/ruff check sandbox tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: setup
	$(BIN)/python -m bench

demo: setup
	$(BIN)/sandbox run scenarios/exfiltrate-weights.yaml

cleanup: venv
	$(BIN)/sandbox cleanup

clean:
	rm -rf $(VENV) .cache build *.egg-info
