# chatsite: `make run` serves the site, `make test` runs the whole suite.
# Every install step lives here (or in scripts/ called from here): a fresh machine needs
# nothing but Python 3.11 and root for Debian's packages.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run migrate test lint format check-browser lock bench bench-render clean

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo "chatsite on http://$(HOST):$(PORT)/  (sign up at /accounts/signup/; the first account is the admin)"
	$(BIN)/daphne -b $(HOST) -p $(PORT) chatsite.asgi:application

check-browser:
	bash scripts/ensure-chromium.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install check-browser lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

# Re-pin dependencies after editing pyproject.toml.
lock:
	$(PYTHON) -m venv /tmp/chatsite-uv && /tmp/chatsite-uv/bin/pip install --quiet uv
	/tmp/chatsite-uv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -o requirements.lock

# Per-frame cost of a growing answer, 1 KB to 100 KB, against re-rendering it all.
bench-render: install
	$(BIN)/python -m bench.render_cost

bench: bench-render

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache test-artifacts
