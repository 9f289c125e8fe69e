# Each target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/publisher.toml

.PHONY: run test bench build lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/publisher --config $(CONFIG) build
	$(VENV)/bin/publisher --config $(CONFIG) digest preview
	@echo "Feeds are in public/: open public/index.html in a browser, or point a reader at public/rss.xml."
	@echo "The next weekly digest is in var/preview/: digest.html, digest.txt and digest.eml (nothing was sent)."

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.bench
	$(PY) bench/run.py
	$(PY) bench/mail.py

lint: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check publisher tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf public var .pytest_cache
