# Two commands on a fresh machine: `make run` and `make test`. Everything else is here for convenience.
PY := .venv/bin/python
STAMP := .venv/.installed
PORT ?= 8501

.PHONY: install run test test-fast ingest bench lint clean-store

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt scripts/install.sh scripts/llama_cmake_args.sh
	bash scripts/install.sh

run: $(STAMP)
	@$(PY) -m ingest data --if-empty
	$(PY) -m ui.serve --port $(PORT)

test: $(STAMP)
	bash scripts/test.sh

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not e2e" -q

# `make ingest PATH=~/papers` as the issue asks; DOCS= works too and leaves the shell's PATH alone.
ingest: $(STAMP)
	$(PY) -m ingest $(or $(DOCS),$(if $(filter command line,$(origin PATH)),$(PATH)),data)

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean-store:
	rm -rf storage
