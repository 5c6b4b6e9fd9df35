# BIApp Reports — `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

.PHONY: install run test test-unit chaos lint format bench gallery services clean

$(STAMP): pyproject.toml
	bash scripts/ensure_system_packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Runs the whole system in one process on SQLite with demo data: `make run PORT=8080` for another port.
run: install
	$(BIN)/biapp standalone --demo --port $(PORT)

## Makes sure PostgreSQL and RabbitMQ are up (starting or installing them), then runs every test: two
## workers, a test file each (every test process has its own databases and RabbitMQ vhost), then the
## OpenAPI fuzzer alone (its per-operation cases share one test id, which pytest-xdist would fold into one).
FUZZ := tests/integration/test_api_fuzz.py
test: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 --ignore=$(FUZZ)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(FUZZ)

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

## Long fault soaks (90 s broker and database outages, SMTP down, scheduler and repeated mailer kills) with
## real `biapp` processes, on a PostgreSQL cluster and a RabbitMQ node the tests start themselves; the
## machine's shared ones are never stopped.
chaos: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider -s tests/fault -m chaos

services:
	bash scripts/ensure_services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks are run by hand; figures go to docs/benchmarks.md. All of them take about two hours here (the
## history and purge benchmarks seed a million runs each); `make bench BENCH="api pipeline"` runs a few.
BENCH ?= query_stream render render_memory mail dispatch pipeline fairness api history purge
bench: install services
	bash scripts/ensure_bench_packages.sh
	@for b in $(BENCH); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

## Pictures of what recipients receive (emails, PDF pages, XLSX sheets) in docs/gallery/.
gallery: install
	bash scripts/ensure_gallery_packages.sh
	$(BIN)/python scripts/gallery.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
