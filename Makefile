# chatsite: `make run` serves the site, `make test` runs the whole suite.
# Every install step lives here (or in scripts/ called from here): a fresh machine needs
# nothing but Python 3.11 and root for Debian's packages.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two pins: what the site needs to run (requirements.lock, all that `make run` and a server
# install) and that plus the test, lint and bench tools (requirements-dev.lock, the same
# versions: `make lock` compiles the second first and constrains the first by it).
RUN_STAMP := $(VENV)/.installed-run-$(shell sha1sum requirements.lock | cut -c1-12)
DEV_STAMP := $(VENV)/.installed-dev-$(shell sha1sum requirements-dev.lock | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev run serve-production migrate test test-postgres lint format check-browser lock bench bench-render bench-search bench-imports bench-streams bench-production check-llama-cpp clean

$(RUN_STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-run-* && touch $(RUN_STAMP)

$(DEV_STAMP): requirements-dev.lock $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	rm -f $(VENV)/.installed-dev-* && touch $(DEV_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo "chatsite on http://$(HOST):$(PORT)/  (sign up at /accounts/signup/; the first account is the admin)"
	$(BIN)/python -m chatsite.serve -b $(HOST) -p $(PORT) chatsite.asgi:application

# The production profile on this machine: nginx, PostgreSQL, Redis from Debian's packages,
# WORKERS daphne workers, run from deploy/'s unit and site files (README, Deployment).
WORKERS ?= $(shell nproc)
serve-production: install
	$(BIN)/python scripts/production.py --workers $(WORKERS) --port $(or $(PROD_PORT),8080)

check-browser:
	bash scripts/ensure-chromium.sh

# Each check is one part for scripts/run-parts.sh: a name, then the command.
LINT_PARTS := \
	"ruff check" "$(BIN)/ruff check ." \
	"ruff format --check" "$(BIN)/ruff format --check ." \
	"mypy" "$(BIN)/mypy ."

lint: install-dev
	bash scripts/run-parts.sh $(LINT_PARTS)

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The database-facing tests again, on a real PostgreSQL server from Debian's packages
# (installed, started and removed by the script).
POSTGRES_TESTS := tests/test_search.py tests/test_versions.py tests/test_services.py \
	tests/test_selectors.py tests/test_migrations.py tests/test_import_jobs.py \
	tests/test_portability.py tests/test_attachments.py
PYTEST_POSTGRES := bash scripts/with-postgres.sh $(BIN)/pytest -p no:cacheprovider \
	$(POSTGRES_TESTS)

# Installing stops at the first error (nothing after it could mean anything); then every
# part runs even when an earlier one fails, a summary of all of them comes last, and the
# exit status is non-zero when any part failed.
test: install-dev check-browser
	bash scripts/run-parts.sh $(LINT_PARTS) \
		"migrations" "$(BIN)/python manage.py makemigrations --check --dry-run" \
		"pytest" "$(BIN)/pytest" \
		"pytest on PostgreSQL" "$(PYTEST_POSTGRES)"

test-postgres: install-dev
	$(PYTEST_POSTGRES)

# Re-pin dependencies after editing pyproject.toml.
lock:
	$(PYTHON) -m venv /tmp/chatsite-uv && /tmp/chatsite-uv/bin/pip install --quiet uv
	/tmp/chatsite-uv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements-dev.lock
	/tmp/chatsite-uv/bin/uv pip compile pyproject.toml --python-version 3.11 --no-header -c requirements-dev.lock -o requirements.lock

# Per-frame cost of a growing answer, 1 KB to 100 KB, against re-rendering it all.
bench-render: install-dev
	$(BIN)/python -m bench.render_cost

# Search latency with 10,000 conversations and 200,000 messages, on SQLite then PostgreSQL.
bench-search: install-dev
	$(BIN)/python -m bench.search
	bash scripts/with-postgres.sh $(BIN)/python -m bench.search

# Many streams: the app under daphne against the bare openai SDK on the same upstream
# streams, N = 1 … 800 at 30 chunks/s and a 500 chunks/s model, in-memory and Redis
# channel layers (redis-server from Debian). Table, JSON and plot in bench-results/.
bench-streams: install-dev
	$(BIN)/python -m bench.streams

# The streams benchmark through nginx on the production profile (PostgreSQL, Redis): one
# worker against two, and the sizing for 100 … 10,000 answers computed from the costs.
bench-production: install-dev
	$(BIN)/python -m bench.production

# The README's claims about llama-cpp-python, against the real server: built from its sdist
# on PyPI (about 8 minutes on 2 cores) in a venv of its own, a tiny random-weight model
# written around the tokenizer the sdist ships (nothing from a model hub), then
# bench/local_server.py's four checks, chatsite in front of it included.
LLAMA_VENV := .venv-llama
LLAMA_VERSION := 0.3.16
LLAMA_VOCAB := $(LLAMA_VENV)/src/llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
check-llama-cpp: install-dev
	test -x $(LLAMA_VENV)/bin/python || $(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip install --quiet "llama-cpp-python[server]==$(LLAMA_VERSION)" "gguf==0.19.0"
	test -f $(LLAMA_VOCAB) || ( $(LLAMA_VENV)/bin/python -m pip download --quiet --no-deps \
		--no-binary :all: "llama-cpp-python==$(LLAMA_VERSION)" -d $(LLAMA_VENV)/src && \
		tar xzf $(LLAMA_VENV)/src/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C $(LLAMA_VENV)/src \
		llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf )
	$(BIN)/python -m bench.local_server --llama-python $(LLAMA_VENV)/bin/python --vocab $(LLAMA_VOCAB)

# An import of 5 × 10,000 messages: its cost, and another user's write meanwhile.
bench-imports: install-dev
	$(BIN)/python -m bench.imports

bench: bench-render bench-search bench-imports bench-streams

clean:
	rm -rf $(VENV) $(LLAMA_VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache test-artifacts bench-results
