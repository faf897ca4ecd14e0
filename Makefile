# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast test-opencost lint bench soak deps system-deps clean rules dashboards manifests docs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

# ct-kubecost-mcp-server (a published MCP server over the OpenCost API, run unchanged by the tests) needs
# fastmcp 2, which needs mcp<2 while chargeback needs mcp 2: it gets its own venv inside ours.
$(VENV)/clients/.installed: tests/clients-requirements.txt $(VENV)/.installed
	python3 -m venv $(VENV)/clients
	$(VENV)/clients/bin/pip install -q -r tests/clients-requirements.txt
	touch $@

deps: $(VENV)/.installed $(VENV)/clients/.installed

# Prometheus/promtool/Alertmanager/jsonnetfmt/VictoriaMetrics from Debian, installed only when missing; and
# chromium, which renders the HTML report headless (tests/test_report_html.py).
system-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
	   || ! command -v prometheus-alertmanager >/dev/null || ! command -v jsonnetfmt >/dev/null || ! command -v jq >/dev/null \
	   || ! command -v vmalert >/dev/null || ! command -v chromium >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus prometheus-alertmanager jsonnet jq victoria-metrics \
	    chromium; \
	fi
	@# The Debian packages start a system Prometheus on :9090 (and VictoriaMetrics on :8428); we run our own on free ports.

demo: deps system-deps
	$(PY) -m demo

# The venv's bin/ first on PATH, as for a user who activated it; tests themselves find the console script
# next to sys.executable (tests/console.py), so they also pass without it.
# Every test but OpenCost's suite on TEST_WORKERS processes (pytest-xdist; a module's tests stay on one worker,
# so its Prometheus fixtures are built once), then the suite alone. Beside the rest (tried), the suite's 14-day
# windows passed serve's 120 s api.timeout on 2 loaded cores (503, two unlisted failures).
# `make test-fast` is every test but OpenCost's suite; `make test-opencost` the suite alone.
SUITE_TEST := tests/test_opencost_suite.py
TEST_WORKERS ?= 2
PYTEST := PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest
XDIST := -n $(TEST_WORKERS) --dist loadfile
test: deps system-deps lint
	$(PYTEST) -q $(XDIST) --durations=15 --ignore=$(SUITE_TEST) tests
	$(PYTEST) -q $(SUITE_TEST)

test-fast: deps system-deps
	$(PYTEST) -q $(XDIST) --ignore=$(SUITE_TEST) tests

test-opencost: deps system-deps
	$(PYTEST) -q $(SUITE_TEST)

lint: deps
	$(VENV)/bin/ruff check exporter demo tests bench
	$(VENV)/bin/mypy

# Generated rule files are committed; tests fail if they drift from the mixin. The allocation rules'
# expressions are rendered from the exporter's query builders first (rules/rules/allocation_exprs.json). The plain rule file
# lands in rules/generated/, the PrometheusRule in deploy/manifests/ (via `manifests`).
rules: deps
	$(PY) -m exporter.mixin.rulegen
	jsonnetfmt -i mixin.libsonnet rules/*.libsonnet rules/*/*.libsonnet rules/lib/*.jsonnet
	$(VENV)/bin/chargeback rules --out rules/generated
	$(VENV)/bin/chargeback rules --budgets examples/budgets.yaml --out rules/tests/generated
	$(MAKE) manifests

dashboards: deps
	jsonnetfmt -i dashboards/*.libsonnet dashboards/lib/*.*sonnet
	$(VENV)/bin/chargeback dashboards --out dashboards/generated

# deploy/ from one Jsonnet entry point (exporter, PrometheusRule, dashboard ConfigMaps, Kyverno policy).
manifests: deps
	jsonnetfmt -i deploy/jsonnet/*.*sonnet
	$(VENV)/bin/chargeback manifests --out deploy

# docs/configuration.md from the pydantic schema (exporter/config/schema.py); committed, and tests fail on drift.
docs: deps
	$(PY) -m exporter.config.doc --out docs/configuration.md

# Scale benchmark (not a test). The 100k size takes about 40 minutes on 2 cores: `make bench SIZES=1000,10000`;
# `BENCH_ARGS=--baseline REF` also runs allocate as of git REF against the same data (docs/scale.md).
# SERVE_SIZES=300000 adds serve at the Kubernetes envelope (bench/serve.py: 5,000 nodes at 300k, a short
# backfill; rules + serve cycle Prometheus time and serve's peak RSS; about an hour on 2 cores).
SIZES ?= 1000,10000,100000
CONCURRENCY ?= 1
BENCH_ARGS ?=
SERVE_SIZES ?=
bench: deps system-deps
	$(PY) -m bench.run --sizes $(SIZES) --concurrency $(CONCURRENCY) $(BENCH_ARGS)
	$(if $(SERVE_SIZES),$(PY) -m bench.serve --sizes $(SERVE_SIZES))
	$(PY) -m bench.soak

# Memory soak (not a test): serve's accrual over 30 days of backfilled history, RSS per day; ~3 minutes.
soak: deps system-deps
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .demo .bench build *.egg-info
