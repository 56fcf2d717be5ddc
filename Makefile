# recovery: find, recompute and correct missing or wrong results of Kafka event pipelines.
# `make help` lists the targets. Everything runs from the project's own venv (.venv) and Kafka jars (kafka/lib).

.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RECOVERY := $(BIN)/recovery
SPEC ?= pipeline.toml
PYTEST_ARGS ?=

.PHONY: help chromium setup bench-setup kafka-up kafka-down kafka-status kafka-shell test unit lint demo example-kstreams example-quix lab report reconcile bench soak clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[test,fast,native,spark]'
	@touch $@

# The compiled reader (native/: Rust, pyo3, librdkafka built from source by the rdkafka crate) installed into the
# venv as the recovery_native module; rebuilt when its sources change. CARGO_BUILD_JOBS bounds the build's cores.
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
CARGO_BUILD_JOBS ?= 2

$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES)
	@command -v cargo >/dev/null || { echo "cargo is needed to build native/ (https://rustup.rs)"; exit 1; }
	rm -rf native/target/wheels
	CARGO_BUILD_JOBS=$(CARGO_BUILD_JOBS) $(BIN)/maturin build -q --release --locked -m native/Cargo.toml \
	  -i $(PY) -o native/target/wheels --compatibility linux
	$(PY) -m pip install -q --no-deps --force-reinstall native/target/wheels/recovery_native-*.whl
	@touch $@

QUIX_VENV := examples/quix-streams/.venv

# The Quix Streams example app runs in its own environment: quixstreams 3.28.1 needs confluent-kafka < 2.13,
# the project pins 2.16.1 (examples/quix-streams/requirements.lock; every other shared pin is the same).
$(QUIX_VENV)/.installed: examples/quix-streams/requirements.lock
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q -r examples/quix-streams/requirements.lock
	@touch $@

kafka/lib/.installed: kafka/pom.xml
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime
	@touch $@

spark/lib/.installed: spark/pom.xml
	rm -rf spark/lib
	mvn -q -B -f spark/pom.xml dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime
	@touch $@

registry/target/.installed: registry/pom.xml registry/src/main/java/io/recovery/registry/PropertyList.java
	mvn -q -B -f registry/pom.xml package -DskipTests
	@touch $@

chromium: ## install Debian's headless Chromium (report rendering tests) if missing
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing chromium (Debian package) for the report rendering tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

KSTREAMS_JAR := examples/kafka-streams/target/.built

$(KSTREAMS_JAR): examples/kafka-streams/pom.xml $(shell find examples/kafka-streams/src -type f 2>/dev/null)
	rm -rf examples/kafka-streams/target/lib
	mvn -q -B -f examples/kafka-streams/pom.xml package
	@touch $@

# The package's bytecode, written even where PYTHONDONTWRITEBYTECODE is set (container images often set it): an
# editable install compiles none, and each command would compile some 50 modules on every start (50 ms of 0.15 s)
setup: $(VENV)/.installed $(VENV)/.native $(QUIX_VENV)/.installed kafka/lib/.installed spark/lib/.installed registry/target/.installed $(KSTREAMS_JAR) chromium ## venv with locked packages, the compiled reader (native/, needs cargo), Kafka jars, Spark's Kafka connector jars, a local Schema Registry, the example pipelines (Kafka Streams, Quix Streams), Chromium (idempotent)
	@$(PY) -m compileall -q recovery

kafka-up: setup ## start the local Kafka broker on its existing data (formats only empty storage); SASL=1 adds a SCRAM-SHA-512 listener and ACLs
	@if [ -n "$$KAFKA_BOOTSTRAP_SERVERS" ]; then echo "KAFKA_BOOTSTRAP_SERVERS is set: using $$KAFKA_BOOTSTRAP_SERVERS, starting nothing"; else $(RECOVERY) kafka up $(if $(SASL),--sasl); fi

kafka-down: ## stop the local Kafka broker (its data stays: topics, corrections and audit trail survive kafka-up)
	@if [ -x $(RECOVERY) ]; then $(RECOVERY) kafka down; fi

kafka-status: setup ## broker reachable? topics, partitions, end offsets
	@$(RECOVERY) kafka status

kafka-shell: setup ## a shell with Kafka's own CLI tools on PATH (kafka-topics.sh, kafka-console-consumer.sh, ...)
	@echo "Kafka tools on PATH: $$(ls kafka/bin | tr '\n' ' ')"
	@PATH="$(CURDIR)/kafka/bin:$$PATH" KAFKA_BOOTSTRAP_SERVERS="$${KAFKA_BOOTSTRAP_SERVERS:-$$(cat .kafka-local/bootstrap 2>/dev/null)}" $${SHELL:-bash}

test: setup ## run every test: unit, integration (real broker, started and stopped here), notebooks
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest --nbval-lax notebooks/ $(PYTEST_ARGS)

unit: setup ## fast unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff check, ruff format --check, mypy on the package
	$(BIN)/ruff check recovery tests bench examples
	$(BIN)/ruff format --check recovery tests bench examples
	$(BIN)/mypy recovery
	$(BIN)/mypy examples/kafka-streams/*.py

NOTEBOOK ?= 02_recompute_compare
PARAMS ?= notebooks/params/demo_02.yaml
REPORT_ARGS ?=

demo: kafka-up ## the whole story on the local broker: incident, explore, recompute+compare, approve, publish, reconcile
	$(RECOVERY) simulate --spec $(SPEC) --symbols 5 --events 20000 --seed 7 --faults all --reset-topics --out incidents/demo.json
	$(RECOVERY) report 01_explore_incident -f notebooks/params/demo_01.yaml
	$(RECOVERY) report 02_recompute_compare -f notebooks/params/demo_02.yaml
	@echo "== DEMO ONLY: automatic approval as demo-reviewer; a real fix set is approved by the person who reviewed it =="
	$(RECOVERY) approve fixes/demo --reviewer demo-reviewer
	$(RECOVERY) report 03_publish_fixes -f notebooks/params/demo_03.yaml -p approved_digest $$(cat fixes/demo/digest.sha256)
	$(RECOVERY) report 00_reconciliation -f notebooks/params/reconcile.yaml
	@echo "reports: $(CURDIR)/reports/index.html"

KSTREAMS_EVENTS ?= 6000

example-kstreams: kafka-up ## the Kafka Streams example: generate, the job with faults, the clean job, check-spec, recover, reports, oracle check
	@KAFKA_BOOTSTRAP_SERVERS="$${KAFKA_BOOTSTRAP_SERVERS:-$$(cat .kafka-local/bootstrap)}" \
	  $(PY) examples/kafka-streams/story.py --events $(KSTREAMS_EVENTS) --seed 7 --reports

example-quix: kafka-up ## the Quix Streams example: generate, app with faults, clean app, check-spec, recover, publish, reports, oracle check
	PYTHONWARNINGS=ignore $(PY) examples/quix-streams/story.py --recovery $(RECOVERY) --work work/quix-example \
	  --bootstrap "$${KAFKA_BOOTSTRAP_SERVERS:-$$(cat .kafka-local/bootstrap)}" --reports $(QUIX_ARGS)

report: setup ## run a notebook runbook into reports/ (NOTEBOOK=02_recompute_compare PARAMS=notebooks/params/demo_02.yaml)
	$(RECOVERY) report $(NOTEBOOK) $(if $(PARAMS),-f $(PARAMS)) $(REPORT_ARGS)

reconcile: setup ## the scheduled reconciliation report (exit 3 when discrepancies exceed the threshold)
	$(RECOVERY) report 00_reconciliation -f notebooks/params/reconcile.yaml $(REPORT_ARGS)

bench-setup: setup ## install kcat (Debian package), the client-side baseline of the benchmarks
	@command -v kcat >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq kcat >/dev/null; }

bench: bench-setup ## benchmarks on its own broker: prints a table, writes docs/benchmarks.md (BENCH_ARGS="--scenarios 1m")
	$(PY) -m bench.run $(BENCH_ARGS)

soak: setup ## many more differential cases, long fault trials (SIGKILLed publishes, broker restarts) on the real broker
	RECOVERY_SOAK=1 $(BIN)/pytest tests/unit/pipeline/test_differential.py $(PYTEST_ARGS)
	RECOVERY_SOAK=1 $(BIN)/pytest -m slow tests/integration $(PYTEST_ARGS)

LAB_PORT ?= 8888

lab: setup ## JupyterLab on notebooks/ (prints its URL; LAB_PORT=8888; --allow-root only when run as root)
	@TOKEN=$$($(PY) -c 'import secrets; print(secrets.token_hex(24))'); \
	  ROOT=$$( [ "$$(id -u)" = 0 ] && echo --allow-root ); \
	  echo "JupyterLab on notebooks/: http://127.0.0.1:$(LAB_PORT)/lab?token=$$TOKEN"; \
	  exec $(BIN)/jupyter lab notebooks/ $$ROOT --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	    --ServerApp.port_retries=0 --IdentityProvider.token=$$TOKEN --KernelManager.transport_encryption=auto

clean: ## stop the broker and DELETE its data (every topic, correction and audit record), reports, caches (keeps venv, jars)
	@if [ -x $(RECOVERY) ]; then RECOVERY_KAFKA_HOME=$(CURDIR)/.kafka-local $(RECOVERY) kafka down --wipe; \
	  elif [ -d .kafka-local ]; then echo "deleting the local broker's data in .kafka-local: every topic"; fi
	rm -rf .kafka-local .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find reports -mindepth 1 ! -name .gitkeep ! -name README.md -exec rm -rf {} +
