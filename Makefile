# One task runner on top of uv. Each target bootstraps what it needs on a machine
# that has only Python 3.11+: uv is taken from PATH, else installed into .tools/.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: demo test lint bench sync services clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

sync: $(UV)
	$(UV) sync --all-packages --frozen

demo: sync
	$(UV) run --no-sync python examples/demo.py

test: sync
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

lint: sync
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

bench: sync
	$(UV) run --no-sync python benchmarks/run_all.py

services:
	bash .ci/services.sh

clean:
	rm -rf .venv .tools .flowrecord .pytest_cache .ruff_cache
