# Fieldwatch — every command the README and CI use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run install test lint format typecheck bench bench-registry bench-ingest bench-query bench-console bench-devices bench-mqtt-inbound bench-downloads bench-rollout bench-sync bench-scaleout bench-dynsec chaos topology standin image-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# `make run` listens where FIELDWATCH_HOST / FIELDWATCH_PORT say (127.0.0.1:8000 when unset);
# `make run HOST=0.0.0.0 PORT=8080` overrides them. Only values given on the command line
# count: a PORT or HOST that happens to be in the environment does not.
RUN_OPTS = $(if $(filter command line,$(origin HOST)),--host $(HOST)) \
           $(if $(filter command line,$(origin PORT)),--port $(PORT))

## Start the whole platform (SQLite under ./data by default).
run: $(STAMP)
	$(BIN)/fieldwatch serve $(strip $(RUN_OPTS) --init)

## The scaled-out installation of deploy/compose/ as local processes: a migration, 2 api
## processes, a gateway and a worker behind nginx (the shipped deploy/nginx/fieldwatch.conf),
## over this machine's PostgreSQL, Redis and RabbitMQ and a Mosquitto with dynamic security
## it starts. Prints the URLs and the admin's login; Ctrl-C stops it and drops its database.
## Needs Debian's nginx-light and mosquitto. Options: TOPOLOGY_ARGS='--port 8080 --workers 2'
## (--help lists them).
topology: $(STAMP)
	$(BIN)/python -m fieldwatch.devtools topology $(TOPOLOGY_ARGS)

## A stand-in vendor cloud (the test suite's) to try the health-data connectors without an
## account at the vendor: VENDOR=oura|withings|google_health|garmin, STANDIN_PORT (8801).
## Prints the settings to start Fieldwatch with, and writes them to data/standin-VENDOR.env.
VENDOR ?= oura
STANDIN_PORT ?= 8801
standin: $(STAMP)
	@mkdir -p data
	$(BIN)/python tests/standins/run.py $(VENDOR) --port $(STANDIN_PORT) --env-file data/standin-$(VENDOR).env

## The test suite: SQLite always, PostgreSQL too when FIELDWATCH_TEST_DATABASE_URL is set.
## It runs in one worker process per core (at most 4; each its own databases and ports),
## a test file at a time per worker; `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

## Benchmarks (need PostgreSQL): they print their figures and write bench/results/.
bench: bench-registry bench-ingest bench-query bench-console

bench-registry: $(STAMP)
	$(BIN)/python bench/bench_registry.py

bench-ingest: $(STAMP)
	$(BIN)/python bench/bench_ingest.py

bench-query: $(STAMP)
	$(BIN)/python bench/bench_query.py

## The console: the inventory page with 100,000 devices, and a 30-day chart drawn in
## headless Chromium (needs chromium-headless-shell)
bench-console: $(STAMP)
	$(BIN)/python bench/bench_console.py --part inventory
	$(BIN)/python bench/bench_console_chart.py

## Connected devices (needs mosquitto too): WebSocket memory, command round trips, MQTT
## ingest, reconnect storm. Choose with BENCH_DEVICES_ARGS='--parts rtt,storm'.
bench-devices: $(STAMP)
	$(BIN)/python bench/bench_devices.py $(BENCH_DEVICES_ARGS)

## The MQTT gateway's handler alone, without a broker: its CPU a message, PostgreSQL's a
## reading, and the rows each table took. Options: BENCH_MQTT_INBOUND_ARGS='--batch 1000 --profile'.
bench-mqtt-inbound: $(STAMP)
	$(BIN)/python bench/bench_mqtt_inbound.py $(BENCH_MQTT_INBOUND_ARGS)

## Firmware downloads (needs nginx: Debian's `nginx-light` or `nginx`): a 1 MiB artifact to
## 1,000 devices at once from nginx (static), Fieldwatch (cap 64, cap raised) and nginx in
## front of Fieldwatch (X-Accel-Redirect), in one run. Options: BENCH_DOWNLOADS_ARGS.
bench-downloads: $(STAMP)
	$(BIN)/python bench/bench_downloads.py $(BENCH_DOWNLOADS_ARGS)

## A firmware rollout: a 1 MiB artifact to 10,000 WebSocket devices in three waves at 200
## devices/minute (about an hour). Options with BENCH_ROLLOUT_ARGS='--devices 300 --rate 600'.
bench-rollout: $(STAMP)
	$(BIN)/python bench/bench_rollout.py $(BENCH_ROLLOUT_ARGS)

## The vendor backfill: 100 Oura connections × 30 days of minute heart rate from the
## stand-in (BENCH_SYNC_ARGS="--connections 5 --days 2" for a quick run).
bench-sync: $(STAMP)
	$(BIN)/python bench/bench_sync.py $(BENCH_SYNC_ARGS)

## Scale-out on the topology's processes, without MQTT (needs PostgreSQL, Redis, RabbitMQ
## and nginx): idle WebSocket devices on one gateway and on two (10,000 each), HTTP ingest
## through nginx with one api process and with two.
## Options: BENCH_SCALEOUT_ARGS='--part gateways --devices 300'.
bench-scaleout: $(STAMP)
	$(BIN)/python bench/bench_scaleout.py $(BENCH_SCALEOUT_ARGS)

## Device logins in Mosquitto's dynamic security as the broker holds more (needs mosquitto
## with its plugin): one at a time as the sync sends them, in batches, without TCP_NODELAY.
## Options: BENCH_DYNSEC_ARGS='--devices 5000 --modes sync'.
bench-dynsec: $(STAMP)
	$(BIN)/python bench/bench_dynsec.py $(BENCH_DYNSEC_ARGS)

## Chaos (needs PostgreSQL and mosquitto; not part of `make test`): kill -9 of the server
## during HTTP, WebSocket and MQTT ingest, and a PostgreSQL outage; prints acknowledged /
## stored / lost / duplicated readings and the 500 and 503 answers. Database:
## FIELDWATCH_CHAOS_DATABASE_URL (admin connection; a scratch database is made next to it).
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

## The image built from the Dockerfile without a Docker daemon (buildah, on a stand-in for
## the Python base image made from Debian's packages) and run: --version, db upgrade, serve
## as uid 10001, the HEALTHCHECK, the console's static files. As root on Debian 12; about
## 4 minutes the first time, 2 after; not part of `make test` or CI. Settings, e.g.
## IMAGE_CHECK_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres: see the script.
image-check:
	scripts/image-build-without-docker.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build src/*.egg-info
