# Every target works on a fresh machine with Docker and nothing else prepared.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup venv images test test-unit lint bench demo cleanup clean

setup: venv images

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,inspect]'
	touch $(STAMP)

images: venv
	$(BIN)/sandbox images build

test: setup
	$(BIN)/pytest -q

test-unit: venv
	$(BIN)/pytest -q tests/unit

lint: venv
	$(BIN)/ruff check sandbox tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

demo: setup
	$(BIN)/sandbox run scenarios/exfiltrate-weights.yaml

cleanup: venv
	$(BIN)/sandbox cleanup

clean:
	rm -rf $(VENV) .cache build *.egg-info
