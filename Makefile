# `make test` is what CI runs (.ci/run): the system packages the suite needs
# (scripts/install-system-packages: apt-get, via sudo when not root; nothing when all
# are there), lint, type check and the whole suite, slow crash/soak/browser tests
# included, and the documentation site (`make docs`). `make test-fast` is the everyday loop.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install system-packages test test-fast lint docs bench clean demo

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: Python 3.11 or newer is needed ($(PYTHON) is not); run make PYTHON=python3.11 ..."; \
	  exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "make: $(PYTHON) cannot make a venv (no ensurepip): on Debian/Ubuntu install python3-venv"; \
	  echo "      (scripts/install-system-packages does, with the test suite's packages)"; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e . --group test --group lint --group docs
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check outbox worker collector tests benchmarks examples
	$(VENV)/bin/ruff format --check outbox worker collector tests benchmarks examples
	$(VENV)/bin/mypy

system-packages:
	@PYTHON=$(PYTHON) scripts/install-system-packages

# The documentation site: the screenshots taken again (Debian's Chromium, which
# `make system-packages` installs; a picture is rewritten only when the page changed),
# then docs/ built into build/site by MkDocs in strict mode: a broken link, a missing
# anchor or page, or a page left out of mkdocs.yml's nav fails.
docs: $(STAMP)
	$(PY) examples/screenshots.py docs/img
	$(VENV)/bin/mkdocs build --strict

# pytest exits 5 when it collected nothing: an empty suite proves nothing, so fail.
test: system-packages lint docs
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$rc

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

bench: $(STAMP)
	$(PY) -m pip install -q --group bench
	$(PY) benchmarks/track_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info

# The main job on the embedded default (SQLite, nothing leaves the machine).
demo: $(STAMP)
	$(PY) examples/demo.py $(ARGS)
