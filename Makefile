# Small verbs shared by the README, developers and CI: the same commands everywhere.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PORT ?= 8000
SAMPLE_CSV := data/dcgm_metrics_sample.csv

.PHONY: help run migrate superuser test test-slow lint format coverage generate openapi check-services clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed  ## the whole pipeline: web, beat, streamer, collector (embedded unless DATABASE_URL/REDIS_URL)
	DJANGO_DEBUG=1 $(PY) manage.py migrate --noinput
	DJANGO_DEBUG=1 $(PY) manage.py add_source sample $(SAMPLE_CSV) --loop --batch-size 100 --interval 2 --if-missing
	DJANGO_DEBUG=1 PORT=$(PORT) $(PY) manage.py run_pipeline

migrate: $(VENV)/.installed  ## apply migrations
	DJANGO_DEBUG=1 $(PY) manage.py migrate --noinput

superuser: $(VENV)/.installed  ## admin login from DJANGO_SUPERUSER_USERNAME / _EMAIL / _PASSWORD
	DJANGO_DEBUG=1 $(PY) manage.py createsuperuser --noinput

test: $(VENV)/.installed  ## the default suite (unit + integration against PostgreSQL, Redis, real workers)
	$(PY) -m pytest -m "not slow"

test-slow: $(VENV)/.installed  ## long multi-process scenarios (1M-row memory bound, ...)
	$(PY) -m pytest -m slow

lint: $(VENV)/.installed  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/mypy .

format: $(VENV)/.installed  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

coverage: $(VENV)/.installed  ## the default suite with a coverage report (htmlcov/)
	$(PY) -m pytest -m "not slow" --cov --cov-report=term-missing:skip-covered --cov-report=html

generate: $(VENV)/.installed  ## a DCGM CSV: make generate OUT=var/big.csv ARGS="--timesteps 400"
	DJANGO_DEBUG=1 $(PY) manage.py generate_dcgm $(or $(OUT),var/generated.csv) $(ARGS)

check-services:  ## fail unless PostgreSQL and Redis answer on their default ports
	pg_isready -q -h 127.0.0.1 -p 5432
	redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) var htmlcov .coverage .pytest_cache .mypy_cache .ruff_cache

openapi: $(VENV)/.installed  ## write the OpenAPI spec to openapi.yaml (committed; a test fails when stale)
	DJANGO_DEBUG=1 $(PY) manage.py spectacular --validate --file openapi.yaml
