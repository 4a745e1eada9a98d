# Flywheel: `make run` starts the app, `make test` runs the checks. `make help` lists every target.
#
# Settings come from the environment (see .env.example), e.g.
#   PORT=8001 FLYWHEEL_DATA_DIR=/tmp/fw2 make run
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/flywheel CELERY_BROKER_URL=redis://127.0.0.1:6379/0 make run

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Written after a successful install; requirements are installed again only when requirements.txt is newer.
STAMP := $(VENV)/.requirements-installed
# Tests use their own data folder (a throwaway SQLite database and broker folder), never the app's.
TEST_DATA_DIR := $(or $(FLYWHEEL_DATA_DIR),var/test)
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help run test lint format bench venv migrate seed worker chromium

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@mkdir -p var
	flock var/.venv.lock bash -c '\
	  set -e; \
	  [ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install -r requirements.txt'
	touch $@

venv: $(STAMP) ## Create .venv and install requirements.txt (only when it changed)

run: $(STAMP) ## Migrate, seed the demo, then run web + worker + beat on 127.0.0.1:$PORT (default 8000)
	$(BIN)/python scripts/run.py

migrate: $(STAMP) ## Apply database migrations
	$(BIN)/python manage.py migrate --noinput

seed: $(STAMP) ## Create the youtube-spam demo project and demo logins (idempotent)
	$(BIN)/python manage.py seed_demo

worker: $(STAMP) ## Start one more Celery worker against the configured database and broker
	OMP_NUM_THREADS=1 $(BIN)/celery -A flywheel worker --concurrency=1 --loglevel=INFO \
	  -Q $${FLYWHEEL_CELERY_QUEUE:-flywheel} -n worker-$$$$@%h

chromium: ## Install Debian's chromium and chromium-driver for the browser tests, when missing
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "Installing chromium and chromium-driver with apt-get"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    chromium chromium-driver fonts-liberation; \
	fi

test: $(STAMP) chromium ## ruff check, then the whole pytest suite (DATABASE_URL / CELERY_BROKER_URL if set)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_CELERY_QUEUE=flywheel-test FLYWHEEL_DATA_DIR=$(TEST_DATA_DIR) \
	  $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Install bench/requirements.txt, then run the benchmarks (bench/*.py) in their own data folder
	flock var/.venv.lock $(BIN)/python -m pip install -q -r bench/requirements.txt
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_DATA_DIR=$${FLYWHEEL_DATA_DIR:-var/bench} $(BIN)/python bench/import.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_DATA_DIR=$${FLYWHEEL_DATA_DIR:-var/bench} $(BIN)/python bench/queue.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_DATA_DIR=$${FLYWHEEL_DATA_DIR:-var/bench} $(BIN)/python bench/train.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python bench/features_load.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_DATA_DIR=$${FLYWHEEL_DATA_DIR:-var/bench} $(BIN)/python bench/active_learning.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 FLYWHEEL_DATA_DIR=$${FLYWHEEL_DATA_DIR:-var/bench} $(BIN)/python bench/rebuild_pool.py
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python bench/llm.py
